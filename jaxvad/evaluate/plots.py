"""Evaluation figures (PNG, Agg backend, written atomically): ROC, score and PSNR curves of every video,
error maps and normalcy maps with colour bars."""

from __future__ import annotations

import pathlib

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


SCORE_AXIS = "anomaly score\n(min-max per video)"


def normalisation_note(weights=None, labelled: bool = True) -> str:
  """How the plotted anomaly score was made from the raw scores (``results["score_weights"]``)."""
  weights = dict(weights or {"psnr": 1.0})
  if len(weights) == 1:
    note = f"{next(iter(weights))} min-max normalised per video (each curve spans [0, 1])"
  else:
    terms = " + ".join(f"{w:g} {k}" for k, w in weights.items())
    note = f"each term min-max normalised per video, then {terms}, rescaled to [0, 1]"
  if labelled:
    note += " before the pooled AUC; shaded = abnormal (ground truth)"
  return note


def _pages(n: int, per_page: int) -> list[range]:
  per_page = max(1, int(per_page))
  return [range(s, min(s + per_page, n)) for s in range(0, n, per_page)] or [range(0)]


def _curve_pages(video_scores: VideoScores, curves, *, ylabel: str, ylim, title: str, prefix: str, out_dir,
                 aucs=None, per_page: int = 16, cols: int = 4) -> list[pathlib.Path]:
  """Grid pages of per-video curves (``<prefix>_p<k>.png``), every video drawn, abnormal frames shaded.

  Args:
    curves: list of (legend label, per-video arrays aligned with ``video_scores.frame_index``).
    ylim: (low, high) shared by every panel, so videos compare at a glance.
    aucs: optional per-video AUC (None entries allowed) shown in the panel titles.
  """
  vs = video_scores
  pages = _pages(len(vs.names), per_page)
  paths = []
  for k, page in enumerate(pages, start=1):
    ncols = max(1, min(cols, len(page)))
    nrows = max(1, -(-len(page) // ncols))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(max(4.6 * ncols, 9.0), 2.1 * nrows + 0.6))
    for slot, ax in enumerate(axes.flat):
      if slot >= len(page):
        ax.axis("off")
        continue
      i = page[slot]
      index = vs.frame_index[i]
      if vs.labels is not None:
        for a, b in _spans(np.asarray(vs.labels[i]), index):
          ax.axvspan(a, b, color="tab:red", alpha=0.2, lw=0)
      for label, per_video in curves:
        ax.plot(index, per_video[i], lw=1, label=label)
      auc = None if aucs is None else aucs[i]
      ax.set_title(vs.names[i] + ("" if auc is None else f"  (AUC {auc:.3f})"), fontsize="medium")
      ax.set_xlim(-0.5, max(vs.num_frames[i], 1) - 0.5)
      ax.set_ylim(*ylim)
      if slot % ncols == 0:
        ax.set_ylabel(ylabel)
      if slot // ncols == nrows - 1 or slot + ncols >= len(page):
        ax.set_xlabel("frame")
    axes.flat[0].legend(loc="upper right", fontsize="x-small")
    page_note = f"  (page {k}/{len(pages)})" if len(pages) > 1 else ""
    fig.suptitle(f"{title}{page_note}", fontsize="medium")
    fig.tight_layout()
    paths.append(_save(fig, pathlib.Path(out_dir) / f"{prefix}_p{k}.png"))
  return paths


def plot_score_curves(video_scores: VideoScores, results: dict, path_dir, *, key: str = "anomaly",
                      per_page: int = 16, cols: int = 4) -> list[pathlib.Path]:
  """Anomaly score over frame index for EVERY video, on grid pages ``scores_p1.png``, ``scores_p2.png``, ...

  The scores are the per-video min-max normalised ones the AUC pools (the y axis says so); the raw PSNR
  is drawn by `plot_psnr_curves`.

  Args:
    video_scores: from `scoring.score_split`.
    results: from `scoring.evaluate_scores` (uses results["frame_scores"][key], its smoothed curve when
      present, and the per-video AUCs).
    path_dir: output directory.
    key: which frame score to draw.
    per_page: videos per page (Ped2: 12 test videos, one page; Ped1: 36, three pages).
    cols: panels per row.

  Returns:
    The PNG paths, one per page.
  """
  frame_scores = results["frame_scores"]
  curves = [(key, frame_scores[key])]
  if key + "_smoothed" in frame_scores:
    curves.append((key + " (smoothed)", frame_scores[key + "_smoothed"]))
  aucs = [row.get("auc") for row in results["per_video"]] if "per_video" in results else None
  note = normalisation_note(results.get("score_weights"), labelled=video_scores.labels is not None)
  return _curve_pages(video_scores, curves, ylabel=SCORE_AXIS, ylim=(-0.02, 1.02), aucs=aucs, prefix="scores",
                      title=f"{video_scores.dataset}: {key} per frame; {note}", out_dir=path_dir,
                      per_page=per_page, cols=cols)


def plot_psnr_curves(video_scores: VideoScores, path_dir, *, per_page: int = 16,
                     cols: int = 4) -> list[pathlib.Path]:
  """Raw PSNR (dB, before any normalisation; high = normal) of every video: ``psnr_p1.png``, ...

  One y range for all videos, so a camera whose frames are easier to predict shows as a higher curve: what
  the per-video min-max normalisation of the anomaly score removes.
  """
  psnr = [np.asarray(p, np.float64) for p in video_scores.scores["psnr"]]
  finite = np.concatenate([p[np.isfinite(p)] for p in psnr]) if psnr else np.zeros(0)
  lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  pad = max(0.5, 0.03 * (hi - lo))
  return _curve_pages(video_scores, [("PSNR", psnr)], ylabel="PSNR (dB), raw", ylim=(lo - pad, hi + pad),
                      prefix="psnr", out_dir=path_dir, per_page=per_page, cols=cols,
                      title=f"{video_scores.dataset}: raw frame-prediction PSNR (not normalised; low = anomalous); "
                            "shaded = abnormal (ground truth)")


def _to_unit(x: np.ndarray) -> np.ndarray:
  """uint8 or [-1, 1] float frames -> float [0, 1] for imshow."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0
  return np.clip((x.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def plot_error_maps(frames, preds, error_maps, masks, path, indices=None,
                    max_rows: int = 4, row_labels=None, title: str | None = None) -> pathlib.Path:
  """Grid of target frame | prediction | error map | mask, every error map on ONE colour scale (colour bar).

  Args:
    frames: [n, H, W, 3] targets, uint8 or float in [-1, 1].
    preds: [n, H, W, 3] predictions, same convention.
    error_maps: [n, H, W] per-pixel errors (squared error of frames in [0, 1], channel mean).
    masks: [n, H, W] ground-truth masks, or None (column left out).
    path: output PNG.
    indices: rows to draw; default the `max_rows` frames of largest mean error (in order). Pick a spread of
      true detections, false alarms and misses with `examples.select_examples`.
    max_rows: number of rows when `indices` is None.
    row_labels: a label per input frame (e.g. "video 04, frame 87"); default "frame <j>".
    title: optional figure title.

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
  return _image_grid(rows, titles, labels, path, colorbars=[((2,), "squared error (shared scale)")], title=title)


def _image_grid(rows, titles, row_labels, path, colorbars=(), title: str | None = None) -> pathlib.Path:
  """Draws rows of (image, imshow kwargs) under column titles, one label per row; saves a PNG.

  Args:
    colorbars: (columns, label) pairs: one colour bar under those columns, for the scale of their last
      image (give those columns shared ``vmin``/``vmax``).
  """
  fig, axes = plt.subplots(len(rows), len(titles), squeeze=False, layout="constrained",
                           figsize=(2.2 * len(titles), 2.2 * max(len(rows), 1) + (0.7 if colorbars else 0)))
  images, clipped = {}, set()
  for r, row in enumerate(rows):
    for c, ((img, kw), col_title) in enumerate(zip(row, titles)):
      ax = axes[r, c]
      images[c] = ax.imshow(img, **kw)
      if "vmax" in kw and np.asarray(img).size and float(np.max(img)) > kw["vmax"]:
        clipped.add(c)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(col_title)
      if c == 0:
        ax.set_ylabel(row_labels[r], fontsize="small")
  for cols, label in colorbars:
    if rows and cols[-1] in images:
      fig.colorbar(images[cols[-1]], ax=[axes[r, c] for r in range(len(rows)) for c in cols], label=label,
                   location="bottom", shrink=0.9, aspect=12 * len(cols),
                   extend="max" if clipped & set(cols) else "neither")
  if title:
    fig.suptitle(title, fontsize="medium")
  return _save(fig, path)


def _robust_max(x: np.ndarray) -> float:
  x = np.asarray(x, np.float32)
  return float(np.percentile(x, 99.5)) if x.size and np.percentile(x, 99.5) > 0 else float(x.max(initial=1.0))


def plot_normalcy_maps(frames, error_maps, normalcy_maps, path, row_labels=None,
                       num_maps: int = 3) -> pathlib.Path:
  """MPN Fig. 4: target | prediction error | sum of normalcy maps | a few single maps, with colour bars.

  Error maps share one scale, the sums one scale and the single maps one scale (a colour bar each; the
  attention scales stop at the 99.5th percentile).

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
  sums = maps.sum(-1)
  err_kw = {"cmap": "inferno", "vmin": 0.0, "vmax": float(error_maps.max()) if error_maps.size else 1.0}
  # Attention is peaky: a few hot pixels would wash every map out, so the scales stop at the 99.5th percentile
  # (colour bars then show an arrow: "and above").
  sum_kw = {"cmap": "viridis", "vmin": float(sums.min()), "vmax": _robust_max(sums)}
  map_kw = {"cmap": "viridis", "vmin": 0.0, "vmax": _robust_max(maps[..., :k])}
  rows = []
  for r in range(len(frames)):
    row = [(_to_unit(frames[r]), {}), (error_maps[r], err_kw), (sums[r], sum_kw)]
    rows.append(row + [(maps[r, ..., m], map_kw) for m in range(k)])
  labels = [f"frame {r}" if row_labels is None else str(row_labels[r]) for r in range(len(frames))]
  colorbars = [((1,), "squared error"), ((2,), "sum of attention")]
  if k:
    colorbars.append((tuple(range(3, 3 + k)), "attention weight"))
  return _image_grid(rows, titles, labels, path, colorbars=colorbars)
