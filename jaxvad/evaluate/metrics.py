"""Frame-, video- and pixel-level anomaly metrics (SPEC 3.3, 4 and 5).

Everything here is NumPy on the host, except `psnr_jax`, which a model may call
inside `jit` (e.g. for a validation loss). Conventions:

* frames are float arrays in [-1, 1] (SPEC 1.3), channel-last;
* labels are 1 = abnormal;
* a *normality* score is high for normal frames, an *anomaly* score is high for
  abnormal ones (SPEC 5 ranks frames by anomaly = 1 - normality).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from jaxvad.errors import ConfigError

MSE_FLOOR = 1e-10  # PSNR of an exact prediction is 100 dB instead of inf.

# Polarity of the scores jaxvad models produce: True = high means normal.
# PSNR (SPEC 3.3 S_fra, SPEC 4 P) is a normality; the MPN compactness error
# (SPEC 3.3 S_fea) and the PGM memory distance (SPEC 4 D) are anomalies.
HIGH_IS_NORMAL = {
    "psnr": True,
    "feature_error": False,
    "compactness_error": False,
    "memory_distance": False,
}


def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Per-frame PSNR in dB (SPEC 3.3, MPN Eq. 12).

  Frames in [-1, 1] are mapped to [0, 1] (x -> (x + 1) / 2), then
  PSNR = 10 log10(1 / mse), mse averaged over H, W and C and floored at
  `MSE_FLOOR` so that a perfect prediction gives 100 dB, not inf.

  Args:
    pred: [..., H, W, C] predicted frames in [-1, 1].
    target: [..., H, W, C] true frames in [-1, 1].

  Returns:
    float64 [...] PSNR per frame.
  """
  diff = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) / 2.0
  mse = np.mean(diff * diff, axis=(-3, -2, -1))
  return 10.0 * np.log10(1.0 / np.maximum(mse, MSE_FLOOR))


def psnr_jax(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
  """`psnr` in jax.numpy (float32), usable inside `jit`; same conventions."""
  diff = (pred.astype(jnp.float32) - target.astype(jnp.float32)) / 2.0
  mse = jnp.mean(diff * diff, axis=(-3, -2, -1))
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, MSE_FLOOR))


def minmax_per_video(values_per_video: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Min-max normalises each video's scores to [0, 1] (SPEC 3.3 and 4).

  Args:
    values_per_video: one 1-D array per video.

  Returns:
    float64 arrays of the same shapes; a constant (or empty) video maps to zeros,
    never NaN.
  """
  out = []
  for v in values_per_video:
    v = np.asarray(v, np.float64)
    if v.size == 0:
      out.append(v.copy())
      continue
    lo, hi = float(np.min(v)), float(np.max(v))
    out.append((v - lo) / (hi - lo) if hi > lo else np.zeros_like(v))
  return out


def gaussian_kernel(sigma: float = 2.0, taps: int = 15) -> np.ndarray:
  """Normalised, centred 1-D Gaussian of `taps` (odd) taps; sums to 1."""
  if taps < 1 or taps % 2 == 0:
    raise ValueError(f"taps must be a positive odd number, got {taps}")
  x = np.arange(taps, dtype=np.float64) - taps // 2
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def gaussian_smooth(x: np.ndarray, sigma: float = 2.0, taps: int = 15) -> np.ndarray:
  """Temporal Gaussian smoothing of one video's scores (SPEC 3.3).

  The MPN reference smooths scores with a 15-tap, sigma = 2 Gaussian. Here the
  kernel is normalised (a constant signal stays constant) and the signal is
  extended by **nearest** padding (edge values repeated, `np.pad(mode="edge")`),
  so the output has the input's length for any length, even shorter than the
  kernel. Apply it per video: smoothing across video borders would leak scores.

  Args:
    x: [N] scores of one video.
    sigma: standard deviation in frames.
    taps: odd kernel length.

  Returns:
    float64 [N] smoothed scores.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 1:
    raise ValueError(f"gaussian_smooth expects one video's [N] scores, got shape {x.shape}")
  if x.size == 0:
    return x.copy()
  k = gaussian_kernel(sigma, taps)
  padded = np.pad(x, taps // 2, mode="edge")
  return np.convolve(padded, k, mode="valid")  # Symmetric kernel: no flip issue.


def combine(
    scores: Mapping[str, Sequence[np.ndarray]],
    weights: Mapping[str, float],
    high_is_normal: Mapping[str, bool] | None = None,
) -> list[np.ndarray]:
  """Weighted sum of per-video min-max normalised normality scores.

  Implements both papers' score fusion generically:
  SPEC 3.3 (MPN Eq. 13): S = S_fra + lambda_s S_fea -> weights {psnr: 1, feature_error: lambda_s};
  SPEC 4 (PGM): S = gamma P + (1 - gamma)(1 - D) -> weights {psnr: gamma, memory_distance: 1 - gamma}.
  Each score is min-max normalised per video; a score whose high values mean
  *abnormal* is inverted (1 - normalised) so every term is a normality.

  Args:
    scores: name -> one 1-D array per video (all names have the same videos and lengths).
    weights: name -> weight; only these names are combined.
    high_is_normal: name -> polarity; defaults to `HIGH_IS_NORMAL` for known names.

  Returns:
    One float64 normality array per video (high = normal), in [0, sum(weights)].
  """
  polarity = dict(HIGH_IS_NORMAL)
  polarity.update(high_is_normal or {})
  if not weights:
    raise ValueError("combine() needs at least one weighted score")
  combined = None
  for name, w in weights.items():
    if name not in scores:
      raise ConfigError(f"score {name!r} not available; have {sorted(scores)}")
    if name not in polarity:
      raise KeyError(f"polarity of score {name!r} unknown: pass high_is_normal={{{name!r}: True/False}}")
    norm = minmax_per_video(scores[name])
    if not polarity[name]:
      norm = [1.0 - n for n in norm]
    if combined is None:
      combined = [w * n for n in norm]
    else:
      if len(norm) != len(combined) or any(a.shape != b.shape for a, b in zip(norm, combined)):
        raise ValueError(f"score {name!r} does not have the same videos/lengths as the others")
      combined = [c + w * n for c, n in zip(combined, norm)]
  return combined


def _flat(x) -> np.ndarray:
  if isinstance(x, (list, tuple)):
    return np.concatenate([np.ravel(np.asarray(v)) for v in x]) if x else np.zeros(0)
  return np.ravel(np.asarray(x))


def frame_auc(anomaly_scores, labels) -> float:
  """Pooled frame-level AUROC (SPEC 5), scikit-learn `roc_auc_score`.

  Args:
    anomaly_scores: [N] array, or a list of per-video arrays (concatenated), high = abnormal.
    labels: same layout, 1 = abnormal.

  Returns:
    The AUC in [0, 1].

  Raises:
    ValueError: if lengths differ or the labels hold a single class.
  """
  s, y = _flat(anomaly_scores).astype(np.float64), _flat(labels).astype(np.int64)
  if s.shape != y.shape:
    raise ValueError(f"{s.size} scores but {y.size} labels")
  classes = np.unique(y)
  if classes.size != 2:
    raise ValueError(
        f"frame AUC needs both normal (0) and abnormal (1) frames; labels hold only {classes.tolist()}")
  return float(sk_metrics.roc_auc_score(y, s))


def per_video_auc(scores_per_video: Sequence[np.ndarray],
                  labels_per_video: Sequence[np.ndarray]) -> dict:
  """Mean of per-video AUCs over the videos holding both classes (SPEC 5).

  Returns:
    {"mean": float (NaN if no video qualifies), "per_video": [float | None] (None = skipped),
     "num_used": int, "num_skipped": int}.
  """
  if len(scores_per_video) != len(labels_per_video):
    raise ValueError(f"{len(scores_per_video)} score arrays but {len(labels_per_video)} label arrays")
  per = []
  for s, y in zip(scores_per_video, labels_per_video):
    y = np.asarray(y)
    per.append(frame_auc(s, y) if np.unique(y).size == 2 else None)
  used = [a for a in per if a is not None]
  return {
      "mean": float(np.mean(used)) if used else float("nan"),
      "per_video": per,
      "num_used": len(used),
      "num_skipped": len(per) - len(used),
  }


def _as_list(x) -> list[np.ndarray]:
  return list(x) if isinstance(x, (list, tuple)) else [np.asarray(x)]


def pixel_auc(error_maps, masks, max_pixels: int = 4_000_000) -> float:
  """Pixel-level AUROC: every pixel of the given frames is a sample (SPEC 5).

  Pixel scores are the error maps, pixel labels are `mask != 0`. If there are
  more than `max_pixels` pixels, every k-th pixel (k = ceil(total / max_pixels),
  the same stride in every video) is kept: deterministic, and unbiased for
  spatially uncorrelated strides.

  Args:
    error_maps: [N, H, W] array or list of per-video arrays (high = abnormal).
    masks: same shapes, nonzero = abnormal pixel.

  Returns:
    The AUC in [0, 1].
  """
  maps, msks = _as_list(error_maps), _as_list(masks)
  if len(maps) != len(msks) or any(np.shape(a) != np.shape(b) for a, b in zip(maps, msks)):
    raise ValueError("error maps and masks must have the same videos and shapes")
  total = sum(int(np.size(m)) for m in maps)
  stride = max(1, -(-total // max_pixels))
  s = np.concatenate([np.ravel(m)[::stride].astype(np.float32) for m in maps])
  y = np.concatenate([(np.ravel(m)[::stride] != 0).astype(np.int8) for m in msks])
  return frame_auc(s, y)


def ucsd_pixel_criterion_auc(error_maps, masks, coverage: float = 0.4) -> float:
  """AUC of the UCSD pixel-level criterion (Mahadevan et al., CVPR 2010).

  At a threshold tau a pixel is *detected* when its error >= tau. An abnormal
  frame (mask not empty) is a true positive only if >= `coverage` (40%) of its
  mask pixels are detected (the localisation requirement); a normal frame (empty
  mask) is a false positive if any of its pixels is detected. TPR = TP / #abnormal
  frames, FPR = FP / #normal frames, swept over all thresholds.

  Exactly: abnormal frame f is detected iff tau <= q_f, q_f = the ceil(coverage *
  n_f)-th largest error inside its mask; normal frame g fires iff tau <= max_g.
  The ROC is therefore that of scores q_f (positives) against max_g (negatives),
  computed exactly with `roc_auc_score` (no threshold grid). Frame labels come
  from the masks, not from the frame labels.

  Args:
    error_maps: [N, H, W] array or list of per-video arrays.
    masks: same shapes, nonzero = abnormal pixel.
    coverage: fraction of the anomalous pixels that must be detected.

  Returns:
    The AUC in [0, 1].
  """
  maps, msks = _as_list(error_maps), _as_list(masks)
  if len(maps) != len(msks) or any(np.shape(a) != np.shape(b) for a, b in zip(maps, msks)):
    raise ValueError("error maps and masks must have the same videos and shapes")
  pos, neg = [], []
  for emap, mask in zip(maps, msks):
    for e, m in zip(np.asarray(emap, np.float32), np.asarray(mask) != 0):
      if m.any():
        inside = np.sort(e[m])[::-1]  # Descending.
        k = max(1, int(np.ceil(coverage * inside.size - 1e-9)))  # 0.4 * 15 = 6.000...01.
        pos.append(inside[k - 1])
      else:
        neg.append(e.max())
  y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
  return frame_auc(np.asarray(pos + neg, np.float64), y)
