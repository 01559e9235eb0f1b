"""`jaxvad prepare` on tiny fixture archives in each benchmark's original layout (raw_layouts)."""

import pathlib

import numpy as np
import pytest
import scipy.io
from PIL import Image

from jaxvad import cli
from jaxvad.data import prepare, raw_layouts
from jaxvad.data.errors import DataError

SIZE = (16, 16)


def _images(folder: pathlib.Path, levels, ext: str, start: int = 1, width: int = 3) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for i, v in enumerate(levels):
    Image.fromarray(np.full(SIZE, v, np.uint8)).save(folder / f"{str(i + start).zfill(width)}{ext}")


def _levels(video) -> list[int]:
  return [int(round(float(f.mean()))) for f in np.asarray(video.frames)]


def _prepare(root, split, cache, dataset, layout, **kw):
  prepare.prepare_split(root, split, cache, dataset=dataset, size=SIZE, layout=layout, progress=False, **kw)
  return prepare.load_split(cache, dataset, split, SIZE)


def _ucsd(tmp_path) -> pathlib.Path:
  root = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
  _images(root / "Train" / "Train001", [10, 20, 30], ".tif")
  _images(root / "Train" / "Train002", [40, 50, 60], ".tif")
  _images(root / "Test" / "Test001", [100 + 10 * i for i in range(11)], ".tif")  # 010 after 009, not after 001.
  _images(root / "Test" / "Test002", [200, 210, 220], ".tif")
  gt = root / "Test" / "Test001_gt"
  gt.mkdir()
  for i in range(11):
    m = np.zeros(SIZE, np.uint8)
    m[2:5, 3:6] = 255 if i in (1, 2) else 0
    Image.fromarray(m).save(gt / f"{i + 1:03d}.bmp")
  (root / "Test" / "UCSDped2.m").write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\n"
                                            "TestVideoFile{end+1}.gt_frame = [3];\n")
  return root


def test_ucsd_via_cli_then_resume(tmp_path, capsys, monkeypatch):
  root, cache = _ucsd(tmp_path), tmp_path / "cache"
  args = ["prepare", "--config", "configs/mpn.py:ped2", "--no-progress", "--set", f"data.root={root}",
          "--set", "data.layout=ucsd", "--set", "data.labels=UCSDped2.m", "--set", f"data.cache_dir={cache}",
          "--set", "data.size=[16,16]"]
  assert cli.main(args) == 0, capsys.readouterr().err
  train, test = (prepare.load_split(cache, "ped2", s, SIZE) for s in ("training", "testing"))
  assert [v.name for v in train.videos] == ["Train001", "Train002"] and train.scenes == ["0"]
  assert [v.name for v in test.videos] == ["Test001", "Test002"]
  assert _levels(test.videos[0]) == [100 + 10 * i for i in range(11)]
  assert test.videos[0].labels.tolist() == [0, 1, 1] + [0] * 8 and test.videos[1].labels.tolist() == [0, 0, 1]
  masks = np.asarray(test.videos[0].masks)
  assert masks.shape == (11, *SIZE) and masks[1, 3, 4] == 255 and masks[0].max() == 0
  assert test.videos[1].masks is None

  def fail(*a, **k):
    raise AssertionError("resume re-decoded a cached video")
  monkeypatch.setattr(prepare, "_write_frames", fail)
  assert cli.main(args) == 0, capsys.readouterr().err  # Everything cached: nothing decoded.


def test_avenue_videos_and_volLabel_masks(tmp_path, monkeypatch, write_video):
  root = tmp_path / "Avenue Dataset"
  write_video(root / "training_videos" / "01.avi", [30, 60])
  write_video(root / "training_videos" / "02.avi", [90, 120, 150])
  write_video(root / "testing_videos" / "01.avi", [40, 80, 160])
  write_video(root / "testing_videos" / "02.avi", [200, 100])
  gt = tmp_path / "ground_truth_demo" / "testing_label_mask"  # Beside the root, as the two zips unpack.
  gt.mkdir(parents=True)
  for i, marked in ((1, (2,)), (2, (0,))):
    vol = np.empty((1, 3 if i == 1 else 2), object)
    for j in range(vol.shape[1]):
      vol[0, j] = np.zeros((32, 32), np.uint8)
      if j in marked:
        vol[0, j][:8, :8] = 1
    scipy.io.savemat(str(gt / f"{i}_label.mat"), {"volLabel": vol})
  cache = tmp_path / "cache"
  train = _prepare(root, "training", cache, "avenue", "avenue")
  assert [v.name for v in train.videos] == ["01", "02"] and [len(v.frames) for v in train.videos] == [2, 3]
  test = _prepare(root, "testing", cache, "avenue", "avenue")
  assert [v.labels.tolist() for v in test.videos] == [[0, 0, 1], [1, 0]]
  assert np.allclose(_levels(test.videos[0]), [40, 80, 160], atol=8)
  m = np.asarray(test.videos[1].masks)
  assert m.shape == (2, *SIZE) and m[0, :4, :4].min() == 255 and m[0, 4:].max() == 0 and m[1].max() == 0

  prepare.cache_path(cache, "avenue", "testing", SIZE, root, "avenue").joinpath("02.frames.npy").unlink()  # Resume: only the missing video decodes.
  decoded = []
  write = prepare._write_frames  # pylint: disable=protected-access
  monkeypatch.setattr(prepare, "_write_frames", lambda e, *a: decoded.append(e.name) or write(e, *a))
  _prepare(root, "testing", cache, "avenue", "avenue")
  assert decoded == ["02"]


def test_shanghaitech_scenes_labels_and_pixel_masks(tmp_path, write_video):
  root = tmp_path / "shanghaitech"
  write_video(root / "training" / "videos" / "01_001.avi", [50, 70])
  write_video(root / "training" / "videos" / "02_001.avi", [90, 110])
  _images(root / "testing" / "frames" / "01_0014", [20, 120, 220], ".jpg", start=0)
  _images(root / "testing" / "frames" / "02_0003", [60, 160], ".jpg", start=0)
  (root / "testing" / "test_frame_mask").mkdir(parents=True)
  np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1, 1]))
  np.save(root / "testing" / "test_frame_mask" / "02_0003.npy", np.array([1, 0]))
  (root / "testing" / "test_pixel_mask").mkdir()
  pix = np.zeros((3, *SIZE), np.uint8)
  pix[1:, 5:9, 5:9] = 1
  np.save(root / "testing" / "test_pixel_mask" / "01_0014.npy", pix)
  cache = tmp_path / "cache"
  train = _prepare(root, "training", cache, "sh", "shanghaitech")
  assert [(v.name, v.scene) for v in train.videos] == [("01_001", "01"), ("02_001", "02")]
  test = _prepare(root, "testing", cache, "sh", "shanghaitech")
  assert [(v.name, v.scene) for v in test.videos] == [("01_0014", "01"), ("02_0003", "02")]
  assert np.allclose(_levels(test.videos[0]), [20, 120, 220], atol=3)
  assert [v.labels.tolist() for v in test.videos] == [[0, 1, 1], [1, 0]]
  assert np.array_equal(np.asarray(test.videos[0].masks), pix * 255) and test.videos[1].masks is None


def test_ucf_crime_one_scene_per_video(tmp_path, write_video):
  root = tmp_path / "UCF_Crimes"
  write_video(root / "Training-Normal-Videos-Part-1" / "Normal_Videos010_x264.mp4", [20, 220])
  write_video(root / "Training-Normal-Videos-Part-2" / "Normal_Videos002_x264.mp4", [60, 100, 140])
  write_video(root / "Testing_Normal_Videos_Anomaly" / "Normal_Videos003_x264.mp4", [90])
  train = _prepare(root, "training", tmp_path / "cache", "ucf", "ucf_crime")
  assert [(v.name, v.scene) for v in train.videos] == [("Normal_Videos002_x264",) * 2, ("Normal_Videos010_x264",) * 2]
  assert train.videos[1].labels is None and train.videos[1].masks is None
  test = raw_layouts.discover_split(root, "testing", "ucf_crime")
  assert [e.name for e in test.entries] == ["Normal_Videos003_x264"]


@pytest.mark.parametrize("layout, make, missing", [
    ("ucsd", lambda r: _images(r / "Test" / "Test001", [1], ".tif"), "Train"),
    ("avenue", lambda r: (r / "testing_videos").mkdir(parents=True), "training_videos"),
    ("shanghaitech", lambda r: (r / "testing" / "frames").mkdir(parents=True), "videos"),
])
def test_missing_layout_folder_is_one_line_error(tmp_path, layout, make, missing):
  root = tmp_path / "data"
  make(root)
  with pytest.raises(DataError) as e:
    prepare.prepare_split(root, "training", tmp_path / "cache", dataset="d", size=SIZE, layout=layout, progress=False)
  msg = str(e.value)
  assert "\n" not in msg and layout in msg and str(root / "training" / missing if layout == "shanghaitech"
                                                    else root / missing) in msg


def test_missing_archive_labels_and_read_split(tmp_path):
  root = _ucsd(tmp_path)
  (root / "Test" / "UCSDped2.m").unlink()
  with pytest.raises(DataError, match="ucsd layout: no UCSDpedN.m label file in .*Test"):
    raw_layouts.discover_split(root, "testing", "ucsd")
  np.save(tmp_path / "labels.npy", np.r_[np.zeros(13), 1])  # Explicit labels replace the archive's.
  split = prepare.read_split(root, "testing", dataset="ped2", size=SIZE, layout="ucsd", labels=tmp_path / "labels.npy")
  assert [len(v.frames) for v in split.videos] == [11, 3] and split.videos[1].labels.tolist() == [0, 0, 1]
  assert split.videos[0].masks.shape == (11, *SIZE) and split.videos[1].masks is None
