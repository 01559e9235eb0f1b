"""experiments/seeds.py: per-seed AUC rows recomputed from scores.npz, and their summary."""

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from experiments import seeds
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
