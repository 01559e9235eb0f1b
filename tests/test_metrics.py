"""Tests of jaxvad.evaluate.metrics against plain NumPy references."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.evaluate import metrics


def _auc_by_pairs(scores, labels):
  """AUC = P(score_pos > score_neg) + 0.5 P(tie), counted over all pairs."""
  pos = [s for s, y in zip(scores, labels) if y == 1]
  neg = [s for s, y in zip(scores, labels) if y == 0]
  total = 0.0
  for p in pos:
    for n in neg:
      total += 1.0 if p > n else 0.5 if p == n else 0.0
  return total / (len(pos) * len(neg))


def test_psnr_hand_computation():
  # One 1x2x1 frame: [-1, 1] maps to [0, 1]: target (0, 1), pred (0.25, 0.5) in [0, 1].
  target = np.array([[[[-1.0], [1.0]]]])  # [1, 1, 2, 1]
  pred = np.array([[[[-0.5], [0.0]]]])
  mse = ((0.25 - 0.0) ** 2 + (0.5 - 1.0) ** 2) / 2
  np.testing.assert_allclose(metrics.psnr(pred, target), [10 * math.log10(1 / mse)])


def test_psnr_batches_floor_and_jax_agree():
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (2, 3, 4, 5, 3)).astype(np.float32)
  pred = np.clip(target + rng.normal(0, 0.1, target.shape), -1, 1).astype(np.float32)
  out = metrics.psnr(pred, target)
  assert out.shape == (2, 3)
  ref = np.empty((2, 3))
  for i in range(2):
    for j in range(3):
      d = (pred[i, j].astype(np.float64) + 1) / 2 - (target[i, j].astype(np.float64) + 1) / 2
      ref[i, j] = 10 * math.log10(1 / np.mean(d ** 2))
  np.testing.assert_allclose(out, ref, rtol=1e-10)
  np.testing.assert_allclose(np.asarray(metrics.psnr_jax(jnp.asarray(pred), jnp.asarray(target))), out,
                             rtol=1e-5)
  assert metrics.psnr(target, target)[0, 0] == pytest.approx(100.0)  # mse floored at 1e-10.


def test_minmax_per_video_incl_constant_and_empty():
  out = metrics.minmax_per_video([np.array([2.0, 4.0, 3.0]), np.full(4, 7.0), np.zeros(0)])
  np.testing.assert_allclose(out[0], [0.0, 1.0, 0.5])
  np.testing.assert_array_equal(out[1], np.zeros(4))
  assert out[2].shape == (0,)
  assert not any(np.isnan(o).any() for o in out)


def test_gaussian_smooth_matches_direct_convolution_loop():
  rng = np.random.default_rng(1)
  x = rng.normal(size=23)
  sigma, taps = 2.0, 15
  w = np.array([math.exp(-0.5 * ((k - 7) / sigma) ** 2) for k in range(taps)])
  w /= w.sum()
  ref = np.empty_like(x)
  for i in range(len(x)):
    acc = 0.0
    for k in range(taps):
      j = min(max(i + k - 7, 0), len(x) - 1)  # Nearest padding.
      acc += w[k] * x[j]
    ref[i] = acc
  np.testing.assert_allclose(metrics.gaussian_smooth(x, sigma, taps), ref, rtol=1e-12)
  np.testing.assert_allclose(metrics.gaussian_smooth(np.full(3, 5.0)), np.full(3, 5.0))  # Shorter than taps.
  assert metrics.gaussian_kernel().sum() == pytest.approx(1.0)


def test_combine_two_scores_both_polarities():
  psnr = [np.array([30.0, 20.0, 25.0]), np.array([10.0, 10.0])]
  feat = [np.array([0.1, 0.3, 0.2]), np.array([1.0, 3.0])]
  out = metrics.combine({"psnr": psnr, "feature_error": feat}, {"psnr": 0.6, "feature_error": 0.4})
  # Video 0: psnr mm (1, 0, .5); feature mm (0, 1, .5) inverted -> (1, 0, .5).
  np.testing.assert_allclose(out[0], [1.0, 0.0, 0.5])
  # Video 1: constant psnr -> 0; feature mm (0, 1) inverted -> (1, 0).
  np.testing.assert_allclose(out[1], [0.4, 0.0])
  # Explicit polarity flips the meaning.
  out2 = metrics.combine({"s": feat}, {"s": 1.0}, high_is_normal={"s": True})
  np.testing.assert_allclose(out2[0], [0.0, 1.0, 0.5])
  with pytest.raises(KeyError, match="polarity"):
    metrics.combine({"s": feat}, {"s": 1.0})


def test_frame_auc_against_pair_counting():
  scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.2])
  labels = np.array([0, 0, 1, 1, 1, 0])
  assert metrics.frame_auc(scores, labels) == pytest.approx(_auc_by_pairs(scores, labels))
  # Lists of per-video arrays are pooled.
  assert metrics.frame_auc([scores[:2], scores[2:]], [labels[:2], labels[2:]]) == pytest.approx(
      _auc_by_pairs(scores, labels))
  with pytest.raises(ValueError, match="both normal"):
    metrics.frame_auc(scores, np.zeros(6))


def test_per_video_auc_skips_single_class_videos():
  scores = [np.array([0.1, 0.9, 0.5]), np.array([0.3, 0.2]), np.array([0.9, 0.1, 0.2, 0.3])]
  labels = [np.array([0, 1, 0]), np.array([0, 0]), np.array([0, 1, 1, 0])]
  out = metrics.per_video_auc(scores, labels)
  assert out["num_used"] == 2 and out["num_skipped"] == 1
  assert out["per_video"][1] is None
  expected = (_auc_by_pairs(scores[0], labels[0]) + _auc_by_pairs(scores[2], labels[2])) / 2
  assert out["mean"] == pytest.approx(expected)


def test_pixel_auc_sanity_and_subsampling():
  masks = np.zeros((2, 4, 4), np.uint8)
  masks[0, 1:3, 1:3] = 1
  perfect = masks.astype(np.float32) + 0.01
  assert metrics.pixel_auc(perfect, masks) == pytest.approx(1.0)
  assert metrics.pixel_auc(1.0 - perfect, masks) == pytest.approx(0.0)
  rng = np.random.default_rng(0)
  noisy = perfect + rng.normal(0, 0.3, perfect.shape)
  ref = _auc_by_pairs(noisy.ravel(), masks.ravel())
  assert metrics.pixel_auc([noisy[:1], noisy[1:]], [masks[:1], masks[1:]]) == pytest.approx(ref)
  sub = metrics.pixel_auc(noisy, masks, max_pixels=16)  # Every 2nd pixel.
  assert sub == pytest.approx(_auc_by_pairs(noisy.ravel()[::2], masks.ravel()[::2]))


def test_ucsd_pixel_criterion_needs_40_percent_coverage():
  masks = np.zeros((3, 1, 5), np.uint8)
  masks[0, 0, :] = 1  # Abnormal frame, 5 pixels: needs 2 detected.
  maps = np.zeros((3, 1, 5), np.float32)
  maps[0, 0] = [0.9, 0.8, 0.1, 0.1, 0.1]  # 2nd largest 0.8 -> detected for tau <= 0.8.
  maps[1, 0] = [0.5, 0, 0, 0, 0]  # Normal frame, fires for tau <= 0.5.
  maps[2, 0] = [0.85, 0, 0, 0, 0]  # Normal frame, fires for tau <= 0.85.
  # ROC of q = 0.8 against maxima (0.5, 0.85): beats one of two -> AUC 0.5.
  assert metrics.ucsd_pixel_criterion_auc(maps, masks) == pytest.approx(0.5)
  maps[0, 0, 1] = 0.95  # Now 40% of the mask is above 0.9 -> beats both.
  assert metrics.ucsd_pixel_criterion_auc(maps, masks) == pytest.approx(1.0)
