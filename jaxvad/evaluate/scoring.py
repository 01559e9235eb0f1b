"""Runs a frame-prediction model over test videos and scores every frame (SPEC 3.3, 4, 5).

`score_split` is model-agnostic: it only needs `predict_fn(windows) -> {"pred": ...}`.
`evaluate_scores` turns the per-frame scores into the numbers of SPEC 5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import logging

import numpy as np
import tqdm

from jaxvad.data.types import Split
from jaxvad.errors import ConfigError, NonFiniteError
from jaxvad.evaluate import metrics

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclasses.dataclass
class VideoScores:
  """Per-frame scores of the scored frames of every test video.

  The first `t` frames of every video have no prediction (a window needs t
  inputs before its target), so they are DROPPED, and so are the targets of the
  first `first_window` windows (few-shot shots, SPEC 3.5): video i contributes
  frames `frame_index[i] = t + first_window, ..., N_i - 1` only (SPEC 5). All lists
  are parallel to `names`.

  Attributes:
    dataset: data set name.
    t: number of input frames per window.
    first_window: windows skipped at the start of each video (0 = none); frames dropped
      per video = t + first_window.
    names: video names.
    scenes: scene ids.
    num_frames: total frames per video, dropped ones included.
    frame_index: int64 [n_i] indices of the scored frames in the original video.
    scores: score name -> per-video float64 [n_i]; always "psnr", plus every
      per-window scalar returned by `predict_fn` (e.g. "feature_error").
    labels: per-video int8 [n_i] (= labels[t:]), or None if any video lacks labels.
    error_maps: per-video float16 [n_i, H, W] squared error (frames in [0, 1]) averaged
      over channels, or None (keep_error_maps=False).
    masks: per-video uint8 [n_i, H, W] (= masks[t:]), or None if unavailable.
    videos_without_masks: names of the videos that have no pixel masks (None: not recorded).
  """

  dataset: str
  t: int
  names: list[str]
  scenes: list[str]
  num_frames: list[int]
  frame_index: list[np.ndarray]
  scores: dict[str, list[np.ndarray]]
  labels: list[np.ndarray] | None = None
  error_maps: list[np.ndarray] | None = None
  masks: list[np.ndarray] | None = None
  first_window: int = 0
  videos_without_masks: list[str] | None = None

  @property
  def num_scored(self) -> int:
    return int(sum(i.size for i in self.frame_index))

  @property
  def num_dropped(self) -> int:
    return int(sum(self.num_frames)) - self.num_scored

  @property
  def dropped_note(self) -> str:
    why = f"(t={self.t}: no prediction exists)" if not self.first_window else (
        f"(t={self.t} without prediction + {self.first_window} few-shot windows)")
    return (f"the first {self.t + self.first_window} frames of each of the {len(self.names)} videos are not "
            f"scored {why}: {self.num_dropped} frames dropped, {self.num_scored} scored")


def _to_float(frames: np.ndarray) -> np.ndarray:
  """uint8 [..., H, W, 3] -> float32 in [-1, 1] (SPEC 1.3)."""
  return np.asarray(frames, np.float32) / 127.5 - 1.0


def score_split(split: Split, predict_fn: PredictFn, *, t: int, batch_size: int = 32,
                keep_error_maps: bool = False, progress: bool = True,
                first_window: int = 0) -> VideoScores:
  """Predicts frames t + first_window .. N-1 of every video and records their scores.

  Windows `frames[k : k + t + 1]`, k = first_window..N-t-1, are batched across
  videos; the last batch is padded (repeating its last window) to `batch_size` so a jitted
  `predict_fn` compiles once, and the padded outputs are discarded. The next
  batch is dispatched before the previous outputs are fetched, so an
  asynchronous (JAX) `predict_fn` overlaps with host-side window building.

  Args:
    split: test videos (uint8 frames; labels and masks used where present).
    predict_fn: float32 [B, t+1, H, W, 3] in [-1, 1] -> dict with "pred" [B, H, W, 3]
      in [-1, 1] and optionally per-window scalars [B] (any other key). The last frame of
      each window is the target: a model must only read windows[:, :t].
    t: number of input frames.
    batch_size: fixed batch size B.
    keep_error_maps: also keep per-pixel error maps (float16, memory: n * H * W * 2 bytes).
    progress: show a tqdm bar.
    first_window: skip this many windows per video, e.g. max(K) for few-shot tables
      whose columns must score the same frames (SPEC 3.5); for per-video adapted
      models call this once per video (a one-video Split) and `merge_video_scores`.

  Returns:
    A `VideoScores` (the first t + first_window frames of each video dropped).
  """
  videos = split.videos
  if not videos:
    raise ValueError(f"split {split.dataset}/{split.split} has no videos to score")
  shapes = {v.frames.shape[1:] for v in videos}
  if len(shapes) > 1:
    raise ValueError(f"all videos must share one frame shape, got {sorted(shapes)}")
  index = [(i, k) for i, v in enumerate(videos) for k in range(first_window, v.num_frames - t)]
  results: list[dict[str, np.ndarray]] = []  # Per batch, host arrays of real windows.
  maps_chunks: list[np.ndarray] = []

  def build(chunk):
    batch = np.empty((batch_size, t + 1) + videos[0].frames.shape[1:], np.float32)
    for j, (i, k) in enumerate(chunk):
      batch[j] = _to_float(videos[i].frames[k:k + t + 1])
    batch[len(chunk):] = batch[len(chunk) - 1]  # Padding: a valid window, outputs dropped.
    return batch

  def collect(batch, out, n):
    out = dict(out)
    if "pred" not in out:
      raise KeyError(f"predict_fn must return 'pred'; got keys {sorted(out)}")
    if "psnr" in out:
      raise KeyError("predict_fn must not return 'psnr' (computed here from 'pred')")
    pred = np.asarray(out.pop("pred"), np.float32)
    if pred.shape != batch[:, -1].shape:
      raise ValueError(f"'pred' has shape {pred.shape}, expected {batch[:, -1].shape}")
    pred, target = pred[:n], batch[:n, -1]
    row = {"psnr": metrics.psnr(pred, target)}
    for key, val in out.items():
      val = np.asarray(val)
      if val.shape != (batch_size,):
        raise ValueError(f"predict_fn output {key!r} must be a per-window scalar [{batch_size}], "
                         f"got shape {val.shape}")
      row[key] = val[:n].astype(np.float64)
    results.append(row)
    if keep_error_maps:
      maps_chunks.append((((pred - target) / 2.0) ** 2).mean(-1).astype(np.float16))

  chunks = [index[s:s + batch_size] for s in range(0, len(index), batch_size)]
  pending = None  # (batch, outputs, n) dispatched but not yet fetched.
  for chunk in tqdm.tqdm(chunks, desc=f"scoring {split.dataset}", disable=not progress):
    batch = build(chunk)
    out = predict_fn(batch)
    if pending is not None:
      collect(*pending)
    pending = (batch, out, len(chunk))
  if pending is not None:
    collect(*pending)

  # Split the flat window order back into videos (windows are in video order).
  skip = t + first_window  # Frames without a score at the start of each video.
  counts = [max(0, v.num_frames - skip) for v in videos]
  bounds = np.cumsum([0] + counts)
  keys = list(results[0]) if results else ["psnr"]
  flat = {k: np.concatenate([r[k] for r in results]) if results else np.zeros(0) for k in keys}
  scores = {k: [flat[k][bounds[i]:bounds[i + 1]] for i in range(len(videos))] for k in keys}
  error_maps = None
  if keep_error_maps:
    h, w = videos[0].frames.shape[1:3]
    all_maps = np.concatenate(maps_chunks) if maps_chunks else np.zeros((0, h, w), np.float16)
    error_maps = [all_maps[bounds[i]:bounds[i + 1]] for i in range(len(videos))]
  has_labels = all(v.labels is not None for v in videos)
  has_masks = all(v.masks is not None for v in videos)
  return VideoScores(
      dataset=split.dataset,
      t=t,
      names=[v.name for v in videos],
      scenes=[v.scene for v in videos],
      num_frames=[v.num_frames for v in videos],
      frame_index=[np.arange(skip, skip + c, dtype=np.int64) for c in counts],
      scores=scores,
      labels=[np.asarray(v.labels[skip:], np.int8) for v in videos] if has_labels else None,
      error_maps=error_maps,
      masks=[np.asarray(v.masks[skip:], np.uint8) for v in videos] if has_masks else None,
      first_window=first_window,
      videos_without_masks=[v.name for v in videos if v.masks is None],
  )


def merge_video_scores(parts: list[VideoScores]) -> VideoScores:
  """Concatenates the videos of several `VideoScores` (e.g. one per adapted video).

  All parts must share t, first_window and score names; labels/maps/masks are kept
  only if every part has them.
  """
  if not parts:
    raise ValueError("nothing to merge")
  first = parts[0]
  for p in parts[1:]:
    if (p.t, p.first_window, sorted(p.scores)) != (first.t, first.first_window, sorted(first.scores)):
      raise ValueError("VideoScores to merge differ in t, first_window or score names")

  def cat(field):
    lists = [getattr(p, field) for p in parts]
    return None if any(x is None for x in lists) else [a for x in lists for a in x]

  return VideoScores(
      dataset=first.dataset, t=first.t, names=cat("names"), scenes=cat("scenes"),
      num_frames=cat("num_frames"), frame_index=cat("frame_index"),
      scores={k: [a for p in parts for a in p.scores[k]] for k in first.scores},
      labels=cat("labels"), error_maps=cat("error_maps"), masks=cat("masks"),
      first_window=first.first_window, videos_without_masks=cat("videos_without_masks"))


def evaluate_scores(video_scores: VideoScores, *,
                    score_weights: Mapping[str, float] | None = None,
                    high_is_normal: Mapping[str, bool] | None = None,
                    smooth: bool = False, sigma: float = 2.0, taps: int = 15,
                    max_pixels: int = 4_000_000) -> dict:
  """Frame-, video- and pixel-level AUCs of scored videos (SPEC 3.3, 4, 5).

  Normality per video = `metrics.combine` (weighted per-video min-max scores, e.g.
  {"psnr": 1, "feature_error": 1} for MPN, {"psnr": 0.6, "memory_distance": 0.4} for
  PGM); anomaly = 1 - normality / sum(weights), in [0, 1]. With `smooth`, the
  anomaly is also Gaussian-smoothed per video (nearest padding) and its AUCs are
  reported *beside* the raw ones. Pixel-level measures use the error maps (the
  frame-prediction error only), when both error maps and masks were kept.

  Raises:
    ScoreNameError: ``score_weights`` names a score that ``video_scores`` lacks (a ConfigError).
    NonFiniteError: a score is NaN/Inf (non-finite model parameters); the message names the video.

  Returns:
    A dict. JSON-ready keys: "dataset", "t", "first_window", "num_videos", "num_frames_scored",
    "num_frames_dropped", "dropped_note", "score_weights", "high_is_normal", "auc",
    "per_video_auc", "per_video_auc_num_used", "per_video_auc_num_skipped",
    "per_video" (list of {"name", "scene", "num_scored", "auc", "auc_smoothed"}); with
    smooth also "smoothing" ({"sigma", "taps", "padding"}), "auc_smoothed",
    "per_video_auc_smoothed"; with maps and masks "pixel_auc"
    (else None, with the reason in "pixel_auc_note", a warning when only some videos lack masks). AUC keys are
    None when the videos have no labels, or when the labels hold one class only (then "auc_note" says so and a
    warning is logged; the scores are still returned).
    Plus "frame_scores" (NOT JSON; `report.save_scores` writes it to scores.npz):
    {"normality", "anomaly"[, "anomaly_smoothed"]} -> per-video float64 arrays.
  """
  vs = video_scores
  weights = dict(score_weights or {"psnr": 1.0})
  polarity = {**metrics.HIGH_IS_NORMAL, **(high_is_normal or {})}
  for name in weights:  # A name no model produces is a typo, not an absent score term.
    if name not in vs.scores and name not in polarity:
      raise metrics.ScoreNameError(f"eval.score_weights names score {name!r}, which this model does not produce; "
                                   f"use one of {sorted(vs.scores)}")
  absent = sorted(set(weights) - set(vs.scores))
  if absent and set(weights) & set(vs.scores):  # E.g. MPN with --set model.use_dpu=False: no feature_error.
    log.warning("eval.score_weights names %s, which this model does not produce; scoring with the rest", absent)
    weights = {k: w for k, w in weights.items() if k in vs.scores}
  elif absent:
    raise ConfigError(f"eval.score_weights {weights}: this model produces none of these scores (it has "
                      f"{sorted(vs.scores)}); set eval.score_weights, e.g. --set eval.score_weights=\"{{'psnr': 1.0}}\"")
  for name in weights:
    if name not in vs.scores:
      raise metrics.ScoreNameError(f"eval.score_weights names score {name!r}, which this model does not produce; "
                                   f"use one of {sorted(vs.scores)}")
  check_finite(vs, ["psnr", *weights])
  normality = metrics.combine(vs.scores, weights, polarity)
  total = float(sum(weights.values()))
  anomaly = [1.0 - n / total for n in normality]
  frame_scores = {"normality": normality, "anomaly": anomaly}
  if smooth:
    frame_scores["anomaly_smoothed"] = [metrics.gaussian_smooth(a, sigma, taps) for a in anomaly]

  res = {
      "dataset": vs.dataset,
      "t": vs.t,
      "first_window": vs.first_window,
      "num_videos": len(vs.names),
      "num_frames_scored": vs.num_scored,
      "num_frames_dropped": vs.num_dropped,
      "dropped_note": vs.dropped_note,
      "score_weights": weights,
      **({"score_weights_absent": absent} if absent else {}),
      "high_is_normal": {k: bool(polarity[k]) for k in weights},
  }
  per_video = [{"name": n, "scene": s, "num_scored": int(i.size), "auc": None}
               for n, s, i in zip(vs.names, vs.scenes, vs.frame_index)]
  variants = [("", anomaly)]
  if smooth:
    res["smoothing"] = {"sigma": sigma, "taps": taps, "padding": "nearest"}
    variants.append(("_smoothed", frame_scores["anomaly_smoothed"]))
  one_class = None
  if vs.labels is not None:
    classes = np.unique(np.concatenate([np.ravel(y) for y in vs.labels]) if vs.labels else np.zeros(0))
    if classes.size != 2:
      one_class = classes.tolist()
      res["auc_note"] = (f"frame AUC undefined: the labels of the {vs.num_scored} scored frames hold only "
                         f"{one_class or 'no frames'} ({_class_words(one_class)}); scores are still written")
      log.warning("%s", res["auc_note"])
  for suffix, scores in variants:
    if vs.labels is None or one_class is not None:
      res["auc" + suffix] = res["per_video_auc" + suffix] = None
      if not suffix and vs.labels is not None:
        res["per_video_auc_num_used"], res["per_video_auc_num_skipped"] = 0, len(vs.names)
      continue
    res["auc" + suffix] = metrics.frame_auc(scores, vs.labels)
    pv = metrics.per_video_auc(scores, vs.labels)
    res["per_video_auc" + suffix] = pv["mean"] if pv["num_used"] else None
    if not suffix:
      res["per_video_auc_num_used"] = pv["num_used"]
      res["per_video_auc_num_skipped"] = pv["num_skipped"]
    for row, a in zip(per_video, pv["per_video"]):
      row["auc" + suffix] = a
  res["per_video"] = per_video

  # Only the pixel-wise AUROC: the strict UCSD criterion (`metrics.ucsd_pixel_criterion_auc`)
  # counts any hot pixel of a normal frame as a false positive, which on raw prediction-error maps
  # gives near-zero values (0.0015 for the Ped2 CPU baseline) that say nothing about localisation.
  res["pixel_auc"] = None
  res["pixel_auc_note"] = _pixel_auc_note(vs)
  if res["pixel_auc_note"] is None:
    res["pixel_auc"] = metrics.pixel_auc(vs.error_maps, vs.masks, max_pixels)
  res["frame_scores"] = frame_scores
  return res


def _class_words(classes) -> str:
  if classes == [0]:
    return "every frame normal"
  if classes == [1]:
    return "every frame abnormal"
  return "no labelled frame"


def _pixel_auc_note(vs: VideoScores) -> str | None:
  """Why the pixel AUC cannot be computed (warned when only some videos lack masks), or None when it can."""
  missing = vs.videos_without_masks or []
  if vs.masks is None and missing and len(missing) < len(vs.names):
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    note = (f"pixel_auc not computed: {len(missing)} of {len(vs.names)} test videos have no pixel masks "
            f"({shown}); it needs masks for every video")
    log.warning("%s", note)
    return note
  if vs.masks is None:
    return "pixel_auc not computed: the test videos have no pixel masks"
  if vs.error_maps is None:
    return "pixel_auc not computed: error maps were not kept (keep_error_maps=False)"
  has_pos = any(bool(np.any(m)) for m in vs.masks)
  has_neg = any(bool(np.any(np.asarray(m) == 0)) for m in vs.masks)
  if not (has_pos and has_neg):
    note = f"pixel_auc undefined: the masks of the scored frames are all {'abnormal' if has_pos else 'normal'}"
    log.warning("%s", note)
    return note
  return None


def check_finite(video_scores: VideoScores, names) -> None:
  """Raises `NonFiniteError` naming the first video whose scores hold NaN/Inf (a model with non-finite weights)."""
  vs = video_scores
  for name in dict.fromkeys(names):
    for video, arr in zip(vs.names, vs.scores.get(name, [])):
      bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
      if bad:
        raise NonFiniteError(f"{name} scores of video {video} are non-finite ({bad} of {np.size(arr)} frames NaN/Inf): "
                             f"the model's parameters (checkpoint) are non-finite; evaluate an earlier checkpoint "
                             f"or retrain with a lower learning rate")
