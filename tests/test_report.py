"""Tests of jaxvad.evaluate.report (files on disk) and jaxvad.evaluate.plots (PNGs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from jaxvad.evaluate import plots
from jaxvad.evaluate import report
from jaxvad.evaluate import scoring


def _video_scores(with_labels=True, with_maps=False) -> scoring.VideoScores:
  rng = np.random.default_rng(0)
  lengths = [6, 5]
  t = 2
  n = [m - t for m in lengths]
  return scoring.VideoScores(
      dataset="fake",
      t=t,
      names=["01_001", "01_002"],
      scenes=["01", "01"],
      num_frames=lengths,
      frame_index=[np.arange(t, m) for m in lengths],
      scores={"psnr": [rng.uniform(20, 40, k) for k in n],
              "feature_error": [rng.uniform(0, 1, k) for k in n]},
      labels=[np.array([0, 1, 1, 0], np.int8), np.array([0, 0, 1], np.int8)] if with_labels else None,
      error_maps=[rng.uniform(0, 1, (k, 4, 4)).astype(np.float16) for k in n] if with_maps else None,
      masks=[np.zeros((k, 4, 4), np.uint8) for k in n] if with_maps else None,
  )


def test_save_scores_roundtrip(tmp_path):
  vs = _video_scores()
  res = scoring.evaluate_scores(vs, score_weights={"psnr": 1.0, "feature_error": 1.0}, smooth=True)
  paths = report.save_scores(tmp_path / "eval", vs, res)
  assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["frames.csv", "results.json", "scores.npz"]
  back = report.load_scores(tmp_path / "eval")
  assert back["names"] == vs.names and back["scenes"] == vs.scenes and back["t"] == 2
  assert back["num_frames"] == [6, 5]
  for i in range(2):
    np.testing.assert_array_equal(back["frame_index"][i], vs.frame_index[i])
    np.testing.assert_array_equal(back["labels"][i], vs.labels[i])
    for k in ("psnr", "feature_error"):
      np.testing.assert_array_equal(back["scores"][k][i], vs.scores[k][i])
    for k in ("normality", "anomaly", "anomaly_smoothed"):
      np.testing.assert_array_equal(back["scores"][k][i], res["frame_scores"][k][i])
  json_res = {k: v for k, v in res.items() if k != "frame_scores"}
  assert back["results"] == json.loads(json.dumps(json_res))
  assert back["results"]["auc"] == pytest.approx(res["auc"])

  with open(paths["csv"], newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 + 3
  assert rows[0]["video"] == "01_001" and rows[0]["frame"] == "2" and rows[1]["label"] == "1"
  assert float(rows[5]["psnr"]) == vs.scores["psnr"][1][1]  # Exact (repr) round trip.
  assert float(rows[6]["anomaly"]) == res["frame_scores"]["anomaly"][1][2]
  assert not list(tmp_path.glob("eval/.*.tmp"))  # No temp file left behind.


def test_save_scores_without_labels_and_nan_to_null(tmp_path):
  vs = _video_scores(with_labels=False)
  report.save_scores(tmp_path, vs, {"auc": None, "x": float("nan"), "y": np.float32(0.5)})
  back = report.load_scores(tmp_path)
  assert back["labels"] is None
  assert back["results"] == {"auc": None, "x": None, "y": 0.5}


def test_atomic_open_keeps_old_file_on_error(tmp_path):
  target = tmp_path / "a.txt"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with report.atomic_open(target, "w") as f:
      f.write("new")
      raise RuntimeError("crash")
  assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_format_table():
  rows = [{"dataset": "ped2", "K=0": 0.9017, "K=1": 0.94456}, {"dataset": "avenue", "K=0": None}]
  text = report.format_table(rows, ["dataset", ("K=0", "K = 0"), "K=1"], float_format="{:.3f}")
  lines = text.splitlines()
  assert lines[0] == "| dataset | K = 0 |   K=1 |"
  assert lines[1] == "|---------|------:|------:|"
  assert lines[2] == "| ped2    | 0.902 | 0.945 |"
  assert lines[3] == "| avenue  |     - |     - |"


def _is_png(path) -> bool:
  return path.stat().st_size > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
  vs = _video_scores(with_maps=True)
  res = scoring.evaluate_scores(vs, smooth=True)
  assert _is_png(plots.plot_roc(res["frame_scores"]["anomaly"], vs.labels, tmp_path / "roc.png"))
  curves = plots.plot_score_curves(vs, res, tmp_path / "curves")
  assert [p.name for p in curves] == ["scores_p1.png"] and _is_png(curves[0])
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
  preds = rng.uniform(-1, 1, (3, 4, 4, 3))
  out = plots.plot_error_maps(frames, preds, vs.error_maps[0][:3], vs.masks[0][:3], tmp_path / "maps.png",
                              max_rows=2)
  assert _is_png(out)
  assert _is_png(plots.plot_error_maps(frames, preds, vs.error_maps[0][:3], None, tmp_path / "m2.png"))
  maps = rng.dirichlet(np.ones(4), size=(3, 10)).transpose(0, 2, 1).reshape(3, 2, 2, 10)  # [n, h, w, M]
  assert _is_png(plots.plot_normalcy_maps(frames, vs.error_maps[0][:3], maps, tmp_path / "nm.png",
                                          row_labels=["a", "b", "c"]))


def test_spans_of_abnormal_frames():
  assert plots._spans(np.array([0, 1, 1, 0, 1]), np.arange(2, 7)) == [(2.5, 4.5), (5.5, 6.5)]
