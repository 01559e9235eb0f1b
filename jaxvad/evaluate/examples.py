"""Which frames to show: a spread of true detections, false alarms and misses; and the evaluation's figures.

A frame is called abnormal when its (per-video normalised) anomaly score reaches a threshold, by default the
one that maximises Youden's J (TPR - FPR) on the pooled ROC, i.e. the ROC's best operating point:

  true detection  abnormal frame, score >= threshold (highest scores first)
  false alarm     normal frame,   score >= threshold (highest scores first)
  miss            abnormal frame, score <  threshold (lowest scores first)

Examples are spread over videos: each kind takes its best frame from a video it has not used yet before it
takes a second one from the same video (and then only frames at least ``min_gap`` apart).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

KINDS = ("true detection", "false alarm", "miss")


@dataclasses.dataclass(frozen=True)
class Example:
  """One frame to show.

  Attributes:
    kind: one of ``KINDS``.
    video: index of the video (in ``VideoScores.names`` order).
    position: index into that video's scored frames (``frame_index[video][position]`` is the frame number).
    score: its anomaly score.
    label: its frame label (1 = abnormal).
  """

  kind: str
  video: int
  position: int
  score: float
  label: int


def youden_threshold(scores, labels) -> float:
  """The score threshold of the pooled ROC point maximising TPR - FPR (ties: the highest threshold)."""
  s = np.concatenate([np.ravel(x) for x in scores]).astype(np.float64)
  y = np.concatenate([np.ravel(x) for x in labels]).astype(np.int64)
  if y.min(initial=0) == y.max(initial=0):
    return float(np.inf) if y.size and y[0] == 0 else float(-np.inf)
  order = np.argsort(-s, kind="stable")
  s, y = s[order], y[order]
  tp, fp = np.cumsum(y), np.cumsum(1 - y)
  last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # Last index of each distinct score.
  j = tp[last] / max(int(y.sum()), 1) - fp[last] / max(int((1 - y).sum()), 1)
  return float(s[last[int(np.argmax(j >= j.max() - 1e-9))]])  # First (highest) threshold of the best J.


def select_examples(scores, labels, *, per_kind: int = 2, threshold: float | None = None,
                    min_gap: int = 8) -> list[Example]:
  """Up to ``per_kind`` examples of each kind (module doc), spread over videos; ordered by kind.

  Args:
    scores: per-video float arrays of anomaly scores (high = abnormal).
    labels: per-video int arrays, same shapes (1 = abnormal).
    per_kind: examples wanted per kind; fewer when a kind has fewer frames (e.g. no misses).
    threshold: decision threshold; default `youden_threshold`.
    min_gap: minimum distance in frames between two examples of one kind in one video.

  Returns:
    The examples: true detections, then false alarms, then misses.
  """
  scores = [np.asarray(s, np.float64) for s in scores]
  labels = [np.asarray(y).astype(np.int64) for y in labels]
  thr = youden_threshold(scores, labels) if threshold is None else float(threshold)
  vid = np.concatenate([np.full(s.size, i) for i, s in enumerate(scores)]).astype(np.int64)
  pos = np.concatenate([np.arange(s.size) for s in scores]).astype(np.int64)
  s, y = np.concatenate(scores), np.concatenate(labels)
  wanted = {"true detection": ((y == 1) & (s >= thr), -s), "false alarm": ((y == 0) & (s >= thr), -s),
            "miss": ((y == 1) & (s < thr), s)}
  out = []
  for kind in KINDS:
    mask, key = wanted[kind]
    cand = np.nonzero(mask)[0]
    cand = cand[np.argsort(key[cand], kind="stable")]
    picked: list[int] = []
    for spread in (True, False):
      for c in cand:
        if len(picked) >= per_kind:
          break
        same = [p for p in picked if vid[p] == vid[c]]
        if (spread and same) or any(abs(pos[p] - pos[c]) < min_gap for p in same) or c in picked:
          continue
        picked.append(int(c))
    out += [Example(kind, int(vid[c]), int(pos[c]), float(s[c]), int(y[c])) for c in picked]
  return out


def write_eval_plots(out, split, video_scores, results, mdef, variables, config) -> list[pathlib.Path]:
  """The figures of ``jaxvad evaluate``: ROC, score and raw-PSNR curves of every video, error maps of a
  spread of examples (shared colour bar) and, for models with a DPU, their normalcy maps (MPN Fig. 4).

  Args:
    out: output folder.
    split: the test `Split` (frames for the example windows).
    video_scores, results: from `scoring.score_split` / `scoring.evaluate_scores` (labels needed).
    mdef, variables: the model and its variables (to predict the example frames).
    config: the experiment config (``data.t``, ``eval.num_error_maps``: examples wanted, spread over kinds).

  Returns:
    The PNG paths.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvad.evaluate import plots  # pylint: disable=g-import-not-at-top

  out = pathlib.Path(out)
  anomaly = results["frame_scores"]["anomaly"]
  paths = [plots.plot_roc(anomaly, video_scores.labels, out / "roc.png",
                          title=f"{config.model.name} on {split.dataset}: AUC {results['auc']:.4f}")]
  paths += plots.plot_score_curves(video_scores, results, out)
  paths += plots.plot_psnr_curves(video_scores, out)
  per_kind = max(1, -(-int(config.eval.get("num_error_maps", 6)) // len(KINDS)))
  chosen = select_examples(anomaly, video_scores.labels, per_kind=per_kind)
  if not chosen:
    return paths
  t = config.data.t
  frame_of = [int(video_scores.frame_index[e.video][e.position]) for e in chosen]
  windows = np.stack([split.videos[e.video].frames[f - t:f + 1] for e, f in zip(chosen, frame_of)])
  windows = windows.astype(np.float32) / 127.5 - 1.0  # [n, t + 1, H, W, 3]
  pred, aux = jax.jit(lambda v, w: mdef.module.apply(v, w[:, :-1], train=False))(variables, windows)
  pred = np.asarray(pred)
  err = np.mean(np.square((pred + 1) / 2 - (windows[:, -1] + 1) / 2), axis=-1)  # [n, H, W]
  has_masks = all(split.videos[e.video].masks is not None for e in chosen)
  masks = np.stack([np.asarray(split.videos[e.video].masks[f]) for e, f in zip(chosen, frame_of)]) if (
      has_masks) else None
  labels = [f"{e.kind}\n{video_scores.names[e.video]} frame {f}\nscore {e.score:.2f}"
            for e, f in zip(chosen, frame_of)]
  thr = youden_threshold(anomaly, video_scores.labels)
  paths.append(plots.plot_error_maps(windows[:, -1], pred, err, masks, out / "error_maps.png",
                                     indices=range(len(chosen)), row_labels=labels,
                                     title=f"examples at the ROC's best threshold (anomaly score {thr:.2f})"))
  if "normalcy_maps" in aux:
    paths.append(plots.plot_normalcy_maps(windows[:, -1], err, np.asarray(aux["normalcy_maps"]),
                                          out / "normalcy_maps.png", row_labels=labels))
  return paths
