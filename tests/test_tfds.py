"""TFDS builders and the TFDS data source, on tiny fixture archives in the original formats (no TensorFlow)."""

import importlib.util
import pathlib
import sys

import ml_collections
import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets", reason="the optional tfds extra is not installed "
                           "(pip install 'jaxvad[tfds]')")
av = pytest.importorskip("av", reason="PyAV is needed to write the fixture videos")

from jaxvad.data import prepare, sources, tfds_source  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvad.data import tfds_builders as tb  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvad.data.windows import WindowSource  # pylint: disable=g-import-not-at-top,wrong-import-position

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _write_images(folder: pathlib.Path, levels, ext: str, start: int = 1, width: int = 3) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for i, v in enumerate(levels):
    Image.fromarray(np.full((16, 24), v, np.uint8)).save(folder / f"{str(i + start).zfill(width)}{ext}")


def _build(builder_cls, manual: pathlib.Path, data_dir: pathlib.Path, config="original"):
  builder = builder_cls(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  if not HAS_TF:
    assert "tensorflow" not in sys.modules
  return builder


def _records(name, data_dir, split):
  src = tfds.data_source(name, data_dir=str(data_dir), split=split)
  return [src[i] for i in range(len(src))]


def _txt(v):
  return v.decode() if isinstance(v, bytes) else v


def _means(recs):
  return [float(np.asarray(r["image"]).mean()) for r in recs]


def test_ucsd_raw_archive(tmp_path):
  root = tmp_path / "manual" / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
  _write_images(root / "Train" / "Train001", [10, 20, 30, 40], ".tif")
  _write_images(root / "Train" / "Train002", [50, 60, 70], ".tif")
  # Frame 10 sorts before 2 as text: numeric order must win.
  _write_images(root / "Test" / "Test001", [100 + 10 * i for i in range(10)], ".tif")
  _write_images(root / "Test" / "Test002", [200, 210, 220], ".tif")
  mask_dir = root / "Test" / "Test001_gt"
  mask_dir.mkdir()
  for i in range(10):
    Image.fromarray(np.full((16, 24), 255 if 1 <= i <= 2 else 0, np.uint8)).save(mask_dir / f"{i + 1:03d}.bmp")
  (root / "Test" / "UCSDped2.m").write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\n"
                                            "TestVideoFile{end+1}.gt_frame = [3];\n")
  _build(tb.UcsdPed2, tmp_path / "manual", tmp_path / "tfds")
  train = _records("ucsd_ped2/original", tmp_path / "tfds", "train")
  assert [(_txt(r["video"]), int(r["frame"])) for r in train] == [("Train001", i) for i in range(4)] + [
      ("Train002", i) for i in range(3)]
  assert _means(train) == [10, 20, 30, 40, 50, 60, 70]
  assert all(int(r["label"]) == -1 and _txt(r["scene"]) == "0" for r in train)
  assert np.asarray(train[0]["image"]).shape == (16, 24, 3)
  test = _records("ucsd_ped2/original", tmp_path / "tfds", "test")
  assert _means(test) == [100 + 10 * i for i in range(10)] + [200, 210, 220]
  assert [int(r["label"]) for r in test] == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 1]
  assert [bool(r["has_mask"]) for r in test] == [True] * 10 + [False] * 3
  assert [int(np.asarray(r["mask"]).max()) for r in test[:4]] == [0, 255, 255, 0]


def test_avenue_avi_and_mat_masks(tmp_path, write_video):
  root = tmp_path / "manual" / "Avenue Dataset"
  write_video(root / "training_videos" / "01.avi", [40, 120, 200])
  write_video(root / "testing_videos" / "01.avi", [30, 90, 150, 210])
  write_video(root / "testing_videos" / "02.avi", [60, 160, 240])
  gt = tmp_path / "manual" / "ground_truth_demo" / "testing_label_mask"
  gt.mkdir(parents=True)
  for i, n, bad in ((1, 4, 2), (2, 3, 0)):
    vol = np.empty((1, n), object)
    for j in range(n):
      m = np.zeros((32, 32), np.uint8)
      m[4:8, 4:8] = j == bad
      vol[0, j] = m
    scipy.io.savemat(str(gt / f"{i}_label.mat"), {"volLabel": vol})
  _build(tb.CuhkAvenue, tmp_path / "manual", tmp_path / "tfds")
  test = _records("cuhk_avenue/original", tmp_path / "tfds", "test")
  assert [(_txt(r["video"]), int(r["frame"]), int(r["label"])) for r in test] == [
      ("01", 0, 0), ("01", 1, 0), ("01", 2, 1), ("01", 3, 0), ("02", 0, 1), ("02", 1, 0), ("02", 2, 0)]
  means = _means(test)
  assert means[:4] == sorted(means[:4]) and means[4:] == sorted(means[4:])
  assert int(np.asarray(test[2]["mask"])[5, 5, 0]) == 255 and int(np.asarray(test[1]["mask"]).max()) == 0
  assert len(_records("cuhk_avenue/original", tmp_path / "tfds", "train")) == 3


def test_shanghaitech_scenes(tmp_path, write_video):
  root = tmp_path / "manual" / "shanghaitech"
  write_video(root / "training" / "videos" / "01_001.avi", [50, 150])
  write_video(root / "training" / "videos" / "02_001.avi", [80, 180, 250])
  _write_images(root / "testing" / "frames" / "01_0014", [10, 20, 30], ".jpg", start=0)
  _write_images(root / "testing" / "frames" / "02_0001", [40, 50], ".jpg", start=0)
  (root / "testing" / "test_frame_mask").mkdir(parents=True)
  np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1, 1], np.int64))
  np.save(root / "testing" / "test_frame_mask" / "02_0001.npy", np.array([1, 0], np.int64))
  _build(tb.ShanghaitechCampus, tmp_path / "manual", tmp_path / "tfds", config="256x256")
  train = _records("shanghaitech_campus/256x256", tmp_path / "tfds", "train")
  assert [(_txt(r["video"]), _txt(r["scene"]), int(r["frame"])) for r in train] == [
      ("01_001", "01", 0), ("01_001", "01", 1), ("02_001", "02", 0), ("02_001", "02", 1), ("02_001", "02", 2)]
  assert np.asarray(train[0]["image"]).shape == (256, 256, 3)
  split = tfds_source.load_split("shanghaitech_campus/256x256", tmp_path / "tfds", "testing", size=(32, 32))
  assert [(v.name, v.scene, v.num_frames) for v in split.videos] == [("01_0014", "01", 3), ("02_0001", "02", 2)]
  assert split.labels.tolist() == [0, 1, 1, 1, 0] and split.scenes == ["01", "02"]
  assert split.videos[0].masks is None


def test_ucf_crime_normal_mp4(tmp_path, write_video):
  manual = tmp_path / "manual"
  write_video(manual / "Training_Normal_Videos_Anomaly" / "Normal_Videos010_x264.mp4", [20, 220])
  write_video(manual / "Training_Normal_Videos_Anomaly" / "Normal_Videos002_x264.mp4", [60, 100, 140])
  write_video(manual / "Testing_Normal_Videos_Anomaly" / "Normal_Videos003_x264.mp4", [90])
  _build(tb.UcfCrimeNormal, manual, tmp_path / "tfds")
  split = tfds_source.load_split("ucf_crime_normal/original", tmp_path / "tfds", "training", size=(32, 32))
  assert [(v.name, v.scene, v.num_frames) for v in split.videos] == [
      ("Normal_Videos002_x264", "Normal_Videos002_x264", 3), ("Normal_Videos010_x264", "Normal_Videos010_x264", 2)]
  assert split.labels is None and split.videos[0].masks is None
  config = ml_collections.ConfigDict(dict(dataset="ucf_crime", format="tfds", tfds_name="ucf_crime_normal/original",
                                          tfds_dir=str(tmp_path / "tfds"), size=(32, 32), scenes=("Normal_Videos010_x264",)))
  via_config = sources.load(config, "training")
  assert [v.name for v in via_config.videos] == ["Normal_Videos010_x264"] and via_config.dataset == "ucf_crime"


@pytest.mark.parametrize("stored", [None, (64, 64)], ids=["original", "64x64"])
def test_ped2_frame_folders_match_native_loader(ped2_root, tmp_path, stored):
  """Real Ped2 read at 64x64 equals the frame cache bit for bit, from a native-size or a 64x64 build."""
  videos = {"train": ["01"], "test": ["01", "02"]}
  config = tb.VadConfig(name="subset", size=stored, videos=videos)
  builder = tb.UcsdPed2(config=config, data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(ped2_root)))
  size = (64, 64)
  for split, tsplit in (("testing", "test"), ("training", "train")):
    got = tfds_source.load_split("ucsd_ped2/subset", tmp_path, split, size=size, dataset="ped2")
    kw = dict(labels=ped2_root / "frame_labels_ped2.npy", masks_dir=ped2_root / "testing" / "gt_masks") if (
        split == "testing") else {}
    want = prepare.read_split(ped2_root, split, dataset="ped2", size=size, videos=videos[tsplit], **kw)
    assert [v.name for v in got.videos] == [v.name for v in want.videos]
    for g, w in zip(got.videos, want.videos):
      np.testing.assert_array_equal(g.frames, w.frames)
      if split == "testing":
        np.testing.assert_array_equal(g.labels, w.labels)
        np.testing.assert_array_equal(g.masks, w.masks)
      else:
        assert g.labels is None and g.masks is None
    a, b = WindowSource(got, t=4), WindowSource(want, t=4)
    assert len(a) == len(b)
    idx = np.arange(0, len(a), 37)
    ba, bb = a.get_batch(idx), b.get_batch(idx)
    for key in ("frames", "video", "start"):
      np.testing.assert_array_equal(ba[key], bb[key])
