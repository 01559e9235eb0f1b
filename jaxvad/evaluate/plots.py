"""Evaluation figures (PNG, Agg backend, written atomically): ROC, score curves, error maps."""

from __future__ import annotations

import os
import pathlib
import re

import matplotlib

matplotlib.use("Agg")  # No display on clusters; must precede pyplot.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn import metrics as sk_metrics

from jaxvad.evaluate.report import atomic_open
from jaxvad.evaluate.scoring import VideoScores


def _save(fig, path) -> pathlib.Path:
  path = pathlib.Path(path)
  with atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  return path


def _flat(x) -> np.ndarray:
  if isinstance(x, (list, tuple)):
    return np.concatenate([np.ravel(v) for v in x]) if x else np.zeros(0)
  return np.ravel(np.asarray(x))


def plot_roc(scores, labels, path, title: str | None = None) -> pathlib.Path:
  """Frame-level ROC curve (SPEC 5) of anomaly scores against labels (1 = abnormal).

  Args:
    scores: [N] or list of per-video arrays (pooled), high = abnormal.
    labels: same layout.
    path: output PNG.
    title: optional title; the AUC is always shown in the legend.

  Returns:
    The PNG path.
  """
  s, y = _flat(scores).astype(np.float64), _flat(labels).astype(np.int64)
  fpr, tpr, _ = sk_metrics.roc_curve(y, s)
  auc = sk_metrics.auc(fpr, tpr)
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
  ax.plot([0, 1], [0, 1], "k:", lw=0.8)
  ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
         title=title or "frame-level ROC")
  ax.legend(loc="lower right")
  return _save(fig, path)


def _spans(labels: np.ndarray, index: np.ndarray) -> list[tuple[float, float]]:
  """Runs of label 1 as (first frame - 0.5, last frame + 0.5)."""
  spans, start = [], None
  for j, lab in enumerate(labels):
    if lab and start is None:
      start = j
    if start is not None and (not lab or j == len(labels) - 1):
      end = j if lab else j - 1
      spans.append((index[start] - 0.5, index[end] + 0.5))
      start = None
  return spans


def plot_score_curves(video_scores: VideoScores, results: dict, path_dir,
                      max_videos: int = 8, key: str = "anomaly") -> list[pathlib.Path]:
  """One PNG per video: anomaly score over frame index, abnormal frames shaded.

  Args:
    video_scores: from `scoring.score_split`.
    results: from `scoring.evaluate_scores` (uses results["frame_scores"][key], and
      the smoothed curve too when present).
    path_dir: output directory; files are `scores_<video>.png`.
    max_videos: plot at most this many videos (the first ones in sorted order).
    key: which frame score to draw.

  Returns:
    The PNG paths.
  """
  frame_scores = results["frame_scores"]
  out_dir = pathlib.Path(path_dir)
  paths = []
  for i, name in enumerate(video_scores.names[:max_videos]):
    index = video_scores.frame_index[i]
    fig, ax = plt.subplots(figsize=(8, 2.5))
    if video_scores.labels is not None:
      for a, b in _spans(np.asarray(video_scores.labels[i]), index):
        ax.axvspan(a, b, color="tab:red", alpha=0.2, lw=0)
    ax.plot(index, frame_scores[key][i], lw=1, label=key)
    if key + "_smoothed" in frame_scores:
      ax.plot(index, frame_scores[key + "_smoothed"][i], lw=1, label=key + " (smoothed)")
    auc = results["per_video"][i].get("auc") if "per_video" in results else None
    ax.set(xlabel="frame", ylabel="anomaly score", ylim=(-0.02, 1.02),
           title=f"{name}" + ("" if auc is None else f"  (AUC {auc:.3f})") + "  shaded = abnormal")
    ax.set_xlim(-0.5, max(video_scores.num_frames[i], 1) - 0.5)
    ax.legend(loc="upper right", fontsize="small")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    paths.append(_save(fig, out_dir / f"scores_{safe}.png"))
  return paths


def _to_unit(x: np.ndarray) -> np.ndarray:
  """uint8 or [-1, 1] float frames -> float [0, 1] for imshow."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return np.clip((x.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def plot_error_maps(frames, preds, error_maps, masks, path, indices=None,
                    max_rows: int = 4, row_labels=None) -> pathlib.Path:
  """Grid of target frame | prediction | error map | mask for a few frames.

  Args:
    frames: [n, H, W, 3] targets, uint8 or float in [-1, 1].
    preds: [n, H, W, 3] predictions, same convention.
    error_maps: [n, H, W] per-pixel errors.
    masks: [n, H, W] ground-truth masks, or None (column left out).
    path: output PNG.
    indices: rows to draw; default the `max_rows` frames of largest mean error (in order).
    max_rows: number of rows when `indices` is None.
    row_labels: a label per input frame (e.g. "video 04, frame 87"); default "frame <j>".

  Returns:
    The PNG path.
  """
  error_maps = np.asarray(error_maps, np.float32)
  if indices is None:
    top = np.argsort(-error_maps.reshape(len(error_maps), -1).mean(1), kind="stable")
    indices = np.sort(top[:max_rows])
  indices = list(indices)
  titles = ["target", "prediction", "error", "mask"][: 4 if masks is not None else 3]
  vmax = float(error_maps[indices].max()) if indices else 1.0
  rows = []
  for j in indices:
    row = [(_to_unit(frames[j]), {}), (_to_unit(preds[j]), {}),
           (error_maps[j], {"cmap": "inferno", "vmin": 0.0, "vmax": vmax or 1.0})]
    if masks is not None:
      row.append((np.asarray(masks[j]) != 0, {"cmap": "gray", "vmin": 0, "vmax": 1}))
    rows.append(row)
  labels = [f"frame {j}" if row_labels is None else str(row_labels[j]) for j in indices]
  return _image_grid(rows, titles, labels, path)


def _image_grid(rows, titles, row_labels, path) -> pathlib.Path:
  """Draws rows of (image, imshow kwargs) under column titles, one label per row; saves a PNG."""
  fig, axes = plt.subplots(len(rows), len(titles), squeeze=False,
                           figsize=(2.2 * len(titles), 2.2 * max(len(rows), 1)))
  for r, row in enumerate(rows):
    for c, ((img, kw), title) in enumerate(zip(row, titles)):
      ax = axes[r, c]
      ax.imshow(img, **kw)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(title)
      if c == 0:
        ax.set_ylabel(row_labels[r])
  return _save(fig, path)


def plot_normalcy_maps(frames, error_maps, normalcy_maps, path, row_labels=None,
                       num_maps: int = 3) -> pathlib.Path:
  """MPN Fig. 4: target | prediction error | sum of normalcy maps | a few single maps.

  Args:
    frames: [n, H, W, 3] targets, uint8 or float in [-1, 1].
    error_maps: [n, H, W] per-pixel prediction errors.
    normalcy_maps: [n, h, w, M] DPU attention maps (softmax over positions); h, w may be
      smaller than H, W (DPU plugged at a lower resolution): shown at their own size.
    path: output PNG.
    row_labels: a label per row; default "frame <j>".
    num_maps: how many single maps to show (the first ones, m = 0, 1, ...).

  Returns:
    The PNG path.
  """
  maps = np.asarray(normalcy_maps, np.float32)
  error_maps = np.asarray(error_maps, np.float32)
  k = min(num_maps, maps.shape[-1])
  titles = ["target", "error", "sum of maps"] + [f"map {m}" for m in range(k)]
  rows = []
  for r in range(len(frames)):
    row = [(_to_unit(frames[r]), {}), (error_maps[r], {"cmap": "inferno"}),
           (maps[r].sum(-1), {"cmap": "viridis"})]
    rows.append(row + [(maps[r, ..., m], {"cmap": "viridis"}) for m in range(k)])
  labels = [f"frame {r}" if row_labels is None else str(row_labels[r]) for r in range(len(frames))]
  return _image_grid(rows, titles, labels, path)
