"""experiments/seeds.py: per-seed AUC rows recomputed from scores.npz, and their summary."""

import json

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from experiments import seeds, seeds_compare
from jaxvad.evaluate import report
from jaxvad.evaluate.scoring import VideoScores


def _minmax(x):
  return (x - x.min()) / (x.max() - x.min())


def test_rows_match_a_numpy_reference(tmp_path):
  rng = np.random.default_rng(0)
  n = (30, 40)
  labels = [np.r_[np.zeros(k // 2), np.ones(k - k // 2)].astype(np.int8) for k in n]
  psnr = [rng.normal(size=k) - 0.8 * y for k, y in zip(n, labels)]  # High = normal.
  feat = [rng.normal(size=k) + 0.5 * y for k, y in zip(n, labels)]  # High = abnormal.
  vs = VideoScores(dataset="toy", t=4, names=["a", "b"], scenes=["0", "0"], num_frames=[k + 4 for k in n],
                   frame_index=[np.arange(4, k + 4) for k in n],
                   scores={"psnr": psnr, "feature_error": feat}, labels=labels)
  report.save_scores(tmp_path, vs, {"score_weights": {"feature_error": 1.0, "psnr": 1.0}})

  rows = seeds.run_aucs(tmp_path)
  assert list(rows) == ["FP", "FR", "FP&FR"]
  y = np.concatenate(labels)
  fp = np.concatenate([-_minmax(p) for p in psnr])
  fr = np.concatenate([_minmax(f) for f in feat])
  assert rows["FP"]["auc"] == pytest.approx(sk_metrics.roc_auc_score(y, fp))
  assert rows["FR"]["auc"] == pytest.approx(sk_metrics.roc_auc_score(y, fr))
  assert rows["FP&FR"]["auc"] == pytest.approx(sk_metrics.roc_auc_score(y, fp + fr))
  per_video = np.mean([sk_metrics.roc_auc_score(l, -_minmax(p)) for l, p in zip(labels, psnr)])
  assert rows["FP"]["per_video_auc"] == pytest.approx(per_video)
  # The reference's 15-tap, sigma 2 Gaussian, nearest padding, per video.
  g = np.exp(-0.5 * (np.arange(15) - 7.0) ** 2 / 4.0)
  g /= g.sum()
  smooth = np.concatenate([np.convolve(np.pad(-_minmax(p) + _minmax(f), 7, mode="edge"), g, "valid")
                           for p, f in zip(psnr, feat)])
  assert rows["FP&FR"]["auc_smoothed"] == pytest.approx(sk_metrics.roc_auc_score(y, smooth))
  assert rows["FP&FR"]["auc_smoothed"] != pytest.approx(rows["FP&FR"]["auc"])


def test_summary_is_mean_and_sample_std_over_seeds():
  per_seed = {s: {"FP": {"auc": a}} for s, a in zip((0, 1, 2), (0.8, 0.9, 0.7))}
  got = seeds.summarize(per_seed)["FP"]["auc"]
  assert got["mean"] == pytest.approx(0.8) and got["std"] == pytest.approx(0.1)
  assert (got["min"], got["max"], got["n"]) == (0.7, 0.9, 3)


def test_seed_list_is_checked():
  assert seeds.parse_seeds("0, 2,5") == [0, 2, 5]
  for bad in ("", "0,0", "a,1"):
    with pytest.raises(SystemExit, match="--seeds"):
      seeds.parse_seeds(bad)


def test_train_seconds_sums_the_log_windows(tmp_path):
  rows = [{"step": 100, "loss": 1.0, "steps_per_s": 2.0}, {"step": 300, "loss": 0.5, "steps_per_s": 4.0},
          {"step": 350, "loss": 0.4, "steps_per_s": 10.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert seeds.train_seconds(tmp_path) == pytest.approx(100 / 2 + 200 / 4 + 50 / 10)
  assert seeds.run_times(tmp_path) == {"train_s": pytest.approx(105.0), "wall_s": None}
  (tmp_path / "seed_run.json").write_text(json.dumps({"wall_s": 123.0}))
  assert seeds.run_times(tmp_path)["wall_s"] == 123.0
  assert seeds.train_seconds(tmp_path / "missing") is None


def _payload(aucs, row="FP"):
  return {"config": "c.py:x", "overrides": [], "times": {s: {"train_s": 60.0 * (i + 1)} for i, s in enumerate(aucs)},
          "per_seed": {s: {row: {"auc": a, "per_video_auc": a - 0.01, "auc_smoothed": a + 0.01}}
                       for s, a in aucs.items()}}


def test_compare_pairs_seeds_with_the_reference():
  base = _payload({"0": 0.80, "1": 0.90, "2": 0.85})
  mpn = _payload({"0": 0.83, "1": 0.88, "2": 0.90, "3": 0.70}, row="FP&FR")
  out = seeds_compare.compare({"baseline": (base, "FP"), "mpn": (mpn, "FP&FR")}, "baseline")
  d = out["models"]["mpn"]["minus_reference"]
  assert d["seeds"] == ["0", "1", "2"]  # Seed 3 has no baseline: not paired.
  np.testing.assert_allclose(list(d["per_seed"].values()), [0.03, -0.02, 0.05])
  assert d["mean"] == pytest.approx(0.02) and d["std"] == pytest.approx(np.std([0.03, -0.02, 0.05], ddof=1))
  assert d["positive"] == 2
  assert out["models"]["mpn"]["auc_summary"]["n"] == 4
  assert "minus_reference" not in out["models"]["baseline"]
  table = seeds_compare.markdown(out)
  assert "+2.0 +- 3.6 pts, > 0 on 2/3" in table and "| mpn |" in table and "1-4 min" in table
  with pytest.raises(SystemExit, match="no score row 'FR'"):
    seeds_compare.compare({"baseline": (base, "FR")}, "baseline")
  with pytest.raises(SystemExit, match="NAME=PATH:ROW"):
    seeds_compare.parse_run("mpn.json")
  assert seeds_compare.parse_run("mpn=a:b.json:FP&FR") == ("mpn", "a:b.json", "FP&FR")
