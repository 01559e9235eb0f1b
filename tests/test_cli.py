"""The CLI: user mistakes give one-line errors naming the file; the demo path runs end to end."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxvad import cli

TINY = ["data.size=[32,32]", "data.synthetic.num_scenes=2", "data.synthetic.frames_per_video=24",
        "data.synthetic.train_videos_per_scene=1", "data.synthetic.test_videos_per_scene=1",
        "model.width=0.0625", "train.num_steps=4", "train.batch_size=4", "eval.batch_size=8"]


def make_dataset(root: pathlib.Path, train_lengths=(8, 8), test_lengths=(8,), labels=None) -> pathlib.Path:
  """A tiny data set in the community layout with 0-based PNG frames."""
  rng = np.random.default_rng(0)
  for split, lengths in (("training", train_lengths), ("testing", test_lengths)):
    for v, n in enumerate(lengths):
      d = root / split / "frames" / f"{v + 1:02d}"
      d.mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(d / f"{i:03d}.png")
  if labels is None:
    labels = np.zeros((1, sum(test_lengths)), np.int64)
  np.save(root / "labels.npy", labels)
  return root


def run_cli(args, capsys):
  code = cli.main(args)
  err = capsys.readouterr().err.strip()
  return code, err


def prepare_args(root, tmp_path):
  return ["prepare", "--config", "configs/baseline.py:ped2_cpu", "--no-progress",
          "--set", f"data.root={root}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
          "--set", "data.labels=labels.npy", "--set", "data.masks_dir=", "--set", "data.size=[16,16]"]


def assert_one_line_error(code, err, *needles):
  assert code == 2
  assert err.startswith("error: ") and "\n" not in err, err
  for needle in needles:
    assert needle in err, err


def test_missing_data_folder(tmp_path, capsys):
  code, err = run_cli(prepare_args(tmp_path / "nowhere", tmp_path), capsys)
  assert_one_line_error(code, err, str(tmp_path / "nowhere"), "does not exist")


def test_frame_gap(tmp_path, capsys):
  root = make_dataset(tmp_path / "ds")
  (root / "training" / "frames" / "02" / "004.png").unlink()
  code, err = run_cli(prepare_args(root, tmp_path), capsys)
  assert_one_line_error(code, err, "02", "003.png", "005.png")


def test_label_count_mismatch(tmp_path, capsys):
  root = make_dataset(tmp_path / "ds", labels=np.zeros((1, 7), np.int64))
  code, err = run_cli(prepare_args(root, tmp_path), capsys)
  assert_one_line_error(code, err, "labels.npy", "7", "8")


def test_corrupt_image(tmp_path, capsys):
  root = make_dataset(tmp_path / "ds")
  (root / "testing" / "frames" / "01" / "003.png").write_bytes(b"not a png")
  code, err = run_cli(prepare_args(root, tmp_path), capsys)
  assert_one_line_error(code, err, "003.png")


def test_video_shorter_than_window(tmp_path, capsys):
  root = make_dataset(tmp_path / "ds", train_lengths=(8, 3))
  args = prepare_args(root, tmp_path)
  args[0:3] = ["train", "--workdir", str(tmp_path / "run"), "--config", "configs/baseline.py:ped2_cpu"]
  code, err = run_cli(args, capsys)
  assert_one_line_error(code, err, "02", "3 frames", "window")


def test_bad_override_and_missing_config(tmp_path, capsys):
  code, err = run_cli(["prepare", "--config", "configs/baseline.py:quick", "--set", "model.nope=1"], capsys)
  assert_one_line_error(code, err, "model.nope")
  code, err = run_cli(["prepare", "--config", "configs/missing.py"], capsys)
  assert_one_line_error(code, err, "configs/missing.py")


def test_demo_end_to_end_tiny(tmp_path, capsys):
  workdir = tmp_path / "demo"
  args = ["demo", "--workdir", str(workdir), "--models", "baseline,mpn", "--no-progress"]
  for item in TINY:
    args += ["--set", item]
  assert cli.main(args) == 0
  out = capsys.readouterr().out
  assert "frame AUC" in out
  rows = json.loads((workdir / "summary.json").read_text())
  assert [r["model"] for r in rows] == ["baseline", "mpn"]
  assert all(r["steps"] == 4 and 0.0 <= r["auc"] <= 1.0 for r in rows)
  assert (workdir / "mpn" / "eval" / "normalcy_maps.png").stat().st_size > 0
  ev = workdir / "baseline" / "eval"
  results = json.loads((ev / "results.json").read_text())
  assert results["num_frames_dropped"] == 4 * results["num_videos"]
  for name in ("scores.npz", "frames.csv", "roc.png", "error_maps.png"):
    assert (ev / name).stat().st_size > 0, name
  assert list(ev.glob("scores_*.png"))
  assert (workdir / "data" / "synthetic_32" / "frame_labels.npy").exists()
