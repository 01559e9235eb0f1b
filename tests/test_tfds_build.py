"""`jaxvad build-tfds`, the data.format=tfds defaults and `prepare` with TFDS, on a tiny synthetic archive."""

import importlib.util
import logging
import pathlib
import shutil
import sys

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets", reason="the optional tfds extra is not installed "
                           "(pip install 'jaxvad[tfds]')")

from jaxvad import cli, config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvad.data import prepare, sources, synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvad.data import tfds_source  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvad.data.windows import WindowSource  # pylint: disable=g-import-not-at-top,wrong-import-position

HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(scope="module")
def ped2_like(tmp_path_factory) -> pathlib.Path:
  """A synthetic benchmark written in the frame-folder form of UCSD Ped2 (24x24 frames, label file renamed)."""
  root = tmp_path_factory.mktemp("archive") / "ped2"
  splits = synthetic.make_benchmark(num_scenes=1, size=24, train_videos_per_scene=1, test_videos_per_scene=2,
                                    frames_per_video=10, seed=3)
  synthetic.write_benchmark(splits, root, progress=False)
  shutil.move(root / "frame_labels.npy", root / "frame_labels_ped2.npy")
  return root


def _data_config(root, size, **kw):
  config = config_lib.data_config("ped2", size=size)
  config.update(root=str(root), format="tfds", **kw)
  return config


def test_build_tfds_cli_equals_frame_cache(ped2_like, tmp_path, capsys):
  data_dir = tmp_path / "tfds"
  rc = cli.main(["build-tfds", "--dataset", "ped2", "--manual-dir", str(ped2_like), "--data-dir", str(data_dir),
                 "--size", "16", "--no-progress"])
  assert rc == 0
  assert (data_dir / "ucsd_ped2" / "16x16" / "1.0.0" / "dataset_info.json").is_file()
  assert "built" in capsys.readouterr().out
  if not HAS_TF:
    assert "tensorflow" not in sys.modules
  for split in ("training", "testing"):
    got = tfds_source.load_split("ucsd_ped2/16x16", data_dir, split, size=(16, 16), dataset="ped2")
    kw = dict(labels=ped2_like / "frame_labels_ped2.npy", masks_dir=ped2_like / "testing" / "gt_masks") if (
        split == "testing") else {}
    want = prepare.read_split(ped2_like, split, dataset="ped2", size=(16, 16), **kw)
    assert [v.name for v in got.videos] == [v.name for v in want.videos]
    for g, w in zip(got.videos, want.videos):
      np.testing.assert_array_equal(g.frames, w.frames)
      np.testing.assert_array_equal(g.labels, w.labels)
      np.testing.assert_array_equal(g.masks, w.masks)
    a, b = WindowSource(got, t=2), WindowSource(want, t=2)
    idx = np.arange(len(a))
    np.testing.assert_array_equal(a.get_batch(idx)["frames"], b.get_batch(idx)["frames"])
  assert got.labels.sum() > 0  # The comparison covered abnormal frames.


def test_defaults_from_tfds_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  assert tfds_source.default_data_dir() == tmp_path / "env"
  config = ml_collections.ConfigDict(dict(dataset="ped2", size=(64, 64), tfds_name="", tfds_dir="", root=""))
  assert tfds_source.resolve(config) == ("ucsd_ped2/64x64", tmp_path / "env")
  # Only the native-size build exists: it is read (resized once, identical windows).
  (tmp_path / "env" / "ucsd_ped2" / "original" / "1.0.0").mkdir(parents=True)
  (tmp_path / "env" / "ucsd_ped2" / "original" / "1.0.0" / "dataset_info.json").write_text("{}")
  assert tfds_source.resolve(config)[0] == "ucsd_ped2/original"
  config.tfds_name, config.tfds_dir = "cuhk_avenue/256x256", str(tmp_path / "x")
  assert tfds_source.resolve(config) == ("cuhk_avenue/256x256", tmp_path / "x")
  monkeypatch.delenv("TFDS_DATA_DIR")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert tfds_source.default_data_dir() == tmp_path / "home" / "tensorflow_datasets"
  with pytest.raises(tfds_source.DataError, match="no built TFDS data set.*jaxvad build-tfds --dataset ucsd_ped2"):
    tfds_source.dataset_dir("ucsd_ped2/32x32", tmp_path)


def test_prepare_with_format_tfds_builds_tfds(ped2_like, tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  rc = cli.main(["prepare", "--config", "configs/baseline.py:ped2_cpu", "--set", f"data.root={ped2_like}",
                 "--set", "data.format=tfds", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set",
                 "data.size=(24,24)", "--no-progress"])
  assert rc == 0
  assert (tmp_path / "tfds" / "ucsd_ped2" / "24x24" / "1.0.0" / "dataset_info.json").is_file()
  assert not (tmp_path / "cache").exists()  # No frame cache behind the user's back.
  split = sources.load(_data_config(ped2_like, 24), "testing")
  assert split.num_frames == 20 and split.labels is not None


def test_load_builds_missing_tfds_from_root(ped2_like, tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  split = sources.load(_data_config(ped2_like, 8), "training", progress=False)
  assert [v.frames.shape for v in split.videos] == [(10, 8, 8, 3)]
  assert (tmp_path / "tfds" / "ucsd_ped2" / "8x8").is_dir()


def test_ped1_builder_on_ped2_folder_fails_at_once(ped2_like, tmp_path, capsys):
  rc = cli.main(["build-tfds", "--dataset", "ped1", "--manual-dir", str(ped2_like), "--data-dir",
                 str(tmp_path / "tfds"), "--size", "16", "--no-progress"])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1
  assert "looks like UCSD Ped2" in err and "frame_labels_ped2.npy" in err
  assert not (tmp_path / "tfds" / "ucsd_ped1").exists()  # Nothing decoded before the check.


def test_build_many_skips_absent_archives(ped2_like, tmp_path, capsys):
  rc = cli.main(["build-tfds", "--dataset", "avenue,shanghaitech,ped2", "--manual-dir", str(ped2_like), "--data-dir",
                 str(tmp_path / "tfds"), "--size", "8", "--no-progress"])
  out = capsys.readouterr().out
  assert rc == 0
  assert "skipped avenue: no CUHK Avenue" in out and "skipped shanghaitech: " in out and "built" in out
  built = sorted(p.name for p in (tmp_path / "tfds").iterdir() if p.name != "downloads")
  assert built == ["ucsd_ped2"]  # Skipped data sets leave nothing behind.


def test_opencv_warning_silenced(caplog):
  tfds_source.import_tfds()
  with caplog.at_level(logging.WARNING):
    logging.getLogger("absl").warning("OpenCV is not installed. We recommend using OpenCV because ...")
    logging.getLogger("absl").warning("another absl warning")
  assert "OpenCV" not in caplog.text and "another absl warning" in caplog.text


@pytest.mark.parametrize("size,name", [(64, "64x64"), ("64", "64x64"), ("32x48", "32x48"), ((24, 24), "24x24"),
                                       ("original", "original"), (None, "original")])
def test_config_name(size, name):
  assert tfds_source.config_name(size) == name
