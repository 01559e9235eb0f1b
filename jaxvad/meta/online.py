"""Online adaptation of a live camera: score frames as they arrive and keep adapting (docs/online.md).

The stream starts like the paper's few-shot protocol (MPN Sec. 3.4): the first K = ``online.support`` windows
(frames 0 .. K + t - 1, assumed normal) adapt the meta-learned theta_0 in one Meta-SGD step,

  theta_K = theta_0 - alpha * grad L(support; theta_0)                       (`core.adapt`, as `fewshot.Adapter`)

and every later window s (frames s .. s + t, target frame s + t) is scored with the current theta. Then, every
``online.every`` scored frames, one inner step on the ``online.recent`` most recent windows scored normal:

  theta <- theta - a * grad L(recent normal windows; theta)                  (a = alpha: "meta"; a = lr: "finetune")

Scores. Per-video min-max normalisation (`metrics.combine`) needs the whole video, so online each raw score term
x (PSNR, feature_error) is normalised by the K adaptation windows' terms after the one-shot adaptation,
n = (x - min_K) / (max_K - min_K) ("minmax", default) or (x - mean_K) / std_K ("mean_std"), inverted for
terms whose high values are abnormal, and combined like `scoring.evaluate_scores`:
anomaly = 1 - sum_i w_i n_i / sum_i w_i with w = ``eval.score_weights``. The threshold is the ``quantile`` of the
K adaptation windows' anomaly scores ("quantile") or their mean + ``num_std`` std ("mean_std"); a window is normal
when its score is <= the threshold. With ``recalibrate`` (default) the K adaptation windows are re-scored with
theta after every online step and the statistics and threshold recomputed: each step improves the prediction of
the whole scene (on Ped2, +0.7 dB PSNR per step while the K windows' PSNR spans 0.1 dB), so statistics frozen at
theta_K would make every later frame look ever more normal (docs/online.md). Without it they are fixed at theta_K.

Invariant: a window enters an online step only if its own score, when it was scored, was normal.

Reset rules. (1) drift = |theta - theta_K| / |theta_K| (global L2 norms over theta); after a step with drift >
``max_drift``, theta goes back to theta_K. (2) After ``max_abnormal`` consecutive abnormal frames (0: never) the
stream pauses adaptation and forgets its normal windows; it resumes once ``recent`` consecutive windows score
normal again (a long anomaly, or a scene change that the threshold cannot follow, does not leak in).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
import dataclasses
import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad.errors import ConfigError, DataError
from jaxvad.evaluate import metrics

log = logging.getLogger(__name__)

THRESHOLDS = ("quantile", "mean_std")
NORMALISE = ("minmax", "mean_std")
STEPS = ("meta", "finetune")


@dataclasses.dataclass(frozen=True)
class Settings:
  """The ``online`` config section (`DEFAULTS`; docs/online.md)."""

  support: int = 10
  every: int = 8
  recent: int = 4
  threshold: str = "quantile"
  quantile: float = 0.95
  num_std: float = 3.0
  normalise: str = "minmax"
  recalibrate: bool = True
  max_drift: float = 0.05
  max_abnormal: int = 25
  step: str = "meta"
  lr: float = 1e-3

  def __post_init__(self):
    for name, lo in (("support", 1), ("every", 1), ("recent", 1), ("max_abnormal", 0)):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"online.{name} = {v!r}: must be an integer >= {lo} (e.g. --set online.{name}="
                          f"{DEFAULTS[name]})")
    for name, allowed in (("threshold", THRESHOLDS), ("normalise", NORMALISE), ("step", STEPS)):
      if getattr(self, name) not in allowed:
        raise ConfigError(f"online.{name} = {getattr(self, name)!r}: use one of {allowed}")
    if not isinstance(self.recalibrate, bool):
      raise ConfigError(f"online.recalibrate = {self.recalibrate!r}: must be True or False")
    if not 0.0 < float(self.quantile) <= 1.0:
      raise ConfigError(f"online.quantile = {self.quantile!r}: must be in (0, 1] (e.g. 0.95)")
    if float(self.max_drift) <= 0 or float(self.lr) < 0 or float(self.num_std) < 0:
      raise ConfigError("online.max_drift must be > 0, online.lr and online.num_std >= 0 "
                        f"(got {self.max_drift}, {self.lr}, {self.num_std})")


DEFAULTS = dataclasses.asdict(Settings())  # The section's fields and defaults, e.g. for `configs/meta.py`.


def settings_from_config(config, **overrides) -> Settings:
  """`Settings` from ``config.online`` (missing fields, or a config without the section: `DEFAULTS`)."""
  section = dict(config.get("online", None) or {})
  unknown = sorted(set(section) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f"online.{unknown[0]}: no such field (fields: {', '.join(sorted(DEFAULTS))})")
  return Settings(**{**DEFAULTS, **section, **overrides})


def score_weights(config, available) -> dict:
  """``eval.score_weights`` restricted to the terms the model produces, as `scoring.evaluate_scores` does."""
  weights = dict(config.eval.get("score_weights", None) or {"psnr": 1.0})
  for name in weights:
    if name not in available and name not in metrics.HIGH_IS_NORMAL:
      raise metrics.ScoreNameError(f"eval.score_weights names score {name!r}, which this model does not produce; "
                                   f"use one of {sorted(available)}")
  kept = {k: float(w) for k, w in weights.items() if k in available}
  if not kept:
    raise ConfigError(f"eval.score_weights {weights}: this model produces none of these scores (it has "
                      f"{sorted(available)})")
  return kept


def reference_stats(terms: dict, how: str = "minmax") -> dict:
  """{name: (offset, scale)} of the adaptation windows' raw terms {name: [K]} (scale 1 when they are constant)."""
  out = {}
  for name, x in terms.items():
    x = np.asarray(x, np.float64)
    if how == "minmax":
      lo, span = float(np.min(x)), float(np.max(x) - np.min(x))
    else:
      lo, span = float(np.mean(x)), float(np.std(x))
    out[name] = (lo, span if span > 0 else 1.0)
  return out


def online_anomaly(terms: dict, stats: dict, weights: dict) -> np.ndarray:
  """anomaly = 1 - sum_i w_i n_i / sum_i w_i, n_i the term normalised by ``stats`` (inverted if high = abnormal).

  The per-video `metrics.combine` with the K adaptation windows' statistics in place of the video's own.
  """
  total, normality = float(sum(weights.values())), 0.0
  for name, w in weights.items():
    lo, span = stats[name]
    n = (np.asarray(terms[name], np.float64) - lo) / span
    normality = normality + w * (n if metrics.HIGH_IS_NORMAL[name] else 1.0 - n)
  return 1.0 - normality / total


def threshold_of(scores: np.ndarray, settings: Settings) -> float:
  """The normal/abnormal threshold from the adaptation windows' anomaly scores [K]."""
  scores = np.asarray(scores, np.float64)
  if settings.threshold == "quantile":
    return float(np.quantile(scores, settings.quantile))
  return float(np.mean(scores) + settings.num_std * np.std(scores))


def _drift(theta, ref) -> jax.Array:
  """|theta - ref| / |ref|, global L2 norms over the pytree."""
  sq = lambda tree: sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree))
  return jnp.sqrt(sq(jax.tree.map(jnp.subtract, theta, ref))) / jnp.maximum(jnp.sqrt(sq(ref)), 1e-12)


class Model:
  """The jitted functions of one stream, each compiled once (fixed shapes): one-shot adapt, predict, step, drift."""

  def __init__(self, config, theta, alpha, frozen, settings: Settings):
    from jaxvad.meta import core, protocol  # pylint: disable=g-import-not-at-top  # protocol imports much.
    self.adapter = protocol._adapter(config, frozen)  # pylint: disable=protected-access
    self.theta0, self.alpha, self.frozen = theta, alpha, frozen
    mdef = self.adapter.mdef
    task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
    step_size = alpha if settings.step == "meta" else jnp.asarray(settings.lr, jnp.float32)
    step = jax.jit(lambda th, a, fr, windows: core.inner_update(task_loss, th, a, fr, windows, first_order=True))
    self.step = lambda theta, windows: step(theta, step_size, self.frozen, windows)
    self.drift = jax.jit(_drift)

  def one_shot(self, support: np.ndarray):
    """theta_K: the Meta-SGD adaptation of `fewshot.Adapter` on ``support`` [K, T+1, H, W, 3]."""
    return self.adapter.adapt("meta", self.theta0, self.alpha, support)

  def terms(self, theta, windows: np.ndarray) -> dict:
    """Raw score terms {name: float64 [B]} of ``windows`` [B, T+1, H, W, 3], as `scoring.score_split` computes them."""
    out = dict(self.adapter.predict_fn(theta)(windows))
    pred = np.asarray(out.pop("pred"), np.float32)
    return {"psnr": metrics.psnr(pred, windows[:, -1]), **{k: np.asarray(v, np.float64) for k, v in out.items()}}


def _to_float(frame: np.ndarray) -> np.ndarray:
  return np.asarray(frame, np.float32) / 127.5 - 1.0  # uint8 [H, W, 3] -> [-1, 1] (as scoring._to_float).


def stream(config, theta, alpha, frozen, frames: Iterable[np.ndarray], settings: Settings | None = None, *,
           name: str = "stream", model: Model | None = None) -> Iterator[dict]:
  """Scores a stream of frames and adapts online (module docstring).

  Args:
    config: the meta config (``data.t``, ``data.size``, ``model``, ``meta.inner_steps``, ``eval.score_weights``).
    theta, alpha, frozen: the meta-trained model (`meta_train_lib.load_meta`).
    frames: uint8 [H, W, 3] frames, H, W = ``data.size``, in order (a list, a decoder, a camera).
    settings: default `settings_from_config(config)`.
    name: the stream's name in messages.
    model: reuse the compiled functions of an earlier stream of the same model and settings.

  Yields:
    Per scored frame f (f >= t + K: the first t + K frames only adapt): {"frame": f, "terms": {name: raw},
    "score": anomaly, "normal": bool, "threshold", "updated": an online step ran after scoring f, "reset":
    the step was undone (drift rule), "drift": drift of the theta now in use, "paused": rule 2 holds,
    "update": the step's record {"frame", "windows" (target frames of the windows used), "scores" (theirs,
    when scored), "drift" (after the step, before any reset), "reset", "threshold" (from now on)} or None}.
    "threshold" is the one ``score`` was compared with.

  Raises:
    DataError: a frame of the wrong shape, or fewer than t + K + 1 frames in all.
  """
  s = settings or settings_from_config(config)
  t, k = int(config.data.t), s.support
  shape = tuple(config.data.size) + (3,)
  model = model or Model(config, theta, alpha, frozen, s)
  buf = collections.deque(maxlen=t + 1)  # The last t + 1 frames: the newest window.
  support, normal_windows = [], collections.deque(maxlen=s.recent)  # (frame, window [T+1, H, W, 3], score).
  theta_k = theta_now = weights = stats = threshold = batch = None

  def calibrate(theta):  # The statistics and threshold of the K adaptation windows under theta.
    ref = model.terms(theta, batch)
    st = reference_stats({n: ref[n] for n in weights}, s.normalise)
    return st, threshold_of(online_anomaly(ref, st, weights), s)

  scored = run_abnormal = run_normal = 0
  paused = False
  drift = 0.0
  f = -1
  for f, frame in enumerate(frames):
    frame = np.asarray(frame)
    if frame.shape != shape or frame.dtype != np.uint8:
      raise DataError(f"frame {f} of {name} is {frame.dtype} {frame.shape}; expected uint8 {shape} (data.size)")
    buf.append(_to_float(frame))
    if len(buf) <= t:
      continue
    window = np.stack(buf)  # [T+1, H, W, 3], target frame f.
    if len(support) < k:
      support.append(window)
      if len(support) == k:  # One-shot adaptation, then the reference statistics and the threshold.
        batch = np.stack(support)  # [K, T+1, H, W, 3]
        theta_k = theta_now = model.one_shot(batch)
        weights = score_weights(config, model.terms(theta_k, batch[:1]))
        stats, threshold = calib_k = calibrate(theta_k)
      continue
    terms = {n: float(v[0]) for n, v in model.terms(theta_now, window[None]).items()}
    score, compared = float(online_anomaly(terms, stats, weights)), threshold
    normal = score <= compared
    scored += 1
    run_normal, run_abnormal = (run_normal + 1, 0) if normal else (0, run_abnormal + 1)
    if normal:
      normal_windows.append((f, window, score))
    if s.max_abnormal and run_abnormal >= s.max_abnormal and not paused:
      paused = True
      normal_windows.clear()
    elif paused and run_normal >= s.recent:
      paused = False
    update = None
    if scored % s.every == 0 and not paused and len(normal_windows) == s.recent:
      used = list(normal_windows)
      theta_now = model.step(theta_now, np.stack([w for _, w, _ in used]))  # [recent, T+1, H, W, 3]
      after = float(model.drift(theta_now, theta_k))
      reset = after > s.max_drift
      if reset:
        theta_now = theta_k
        stats, threshold = calib_k
      elif s.recalibrate:
        stats, threshold = calibrate(theta_now)
      drift = 0.0 if reset else after
      update = {"frame": f, "windows": [u for u, _, _ in used], "scores": [sc for _, _, sc in used],
                "drift": after, "reset": bool(reset), "threshold": threshold}
    yield {"frame": f, "terms": terms, "score": score, "normal": bool(normal), "threshold": compared,
           "updated": update is not None, "reset": bool(update and update["reset"]), "drift": drift,
           "paused": paused, "update": update}
  if f + 1 < t + k + 1:
    raise DataError(f"{name} has {f + 1} frames: online adaptation with t = {t} and online.support = {k} needs "
                    f"at least t + support + 1 = {t + k + 1}; use a longer video or lower online.support")


def run_stream(config, theta, alpha, frozen, frames, settings: Settings | None = None, *, name: str = "stream",
               model: Model | None = None) -> dict:
  """`stream` to the end, collected: {"rows": [...], "updates": [...], "threshold", "seconds", ...}."""
  start = time.perf_counter()
  rows = list(stream(config, theta, alpha, frozen, frames, settings, name=name, model=model))
  updates = [r["update"] for r in rows if r["update"]]
  return {"rows": rows, "updates": updates, "threshold": rows[0]["threshold"] if rows else None,
          "threshold_last": rows[-1]["threshold"] if rows else None,
          "num_updates": len(updates), "num_resets": sum(u["reset"] for u in updates),
          "num_abnormal": sum(not r["normal"] for r in rows), "num_paused": sum(r["paused"] for r in rows),
          "seconds": time.perf_counter() - start}


def _frames(video, size) -> tuple[Iterable[np.ndarray], int | None]:
  """A lazy frame iterator of a folder of frames or a video file, and its length when known up front."""
  from jaxvad.data import decode, layout  # pylint: disable=g-import-not-at-top
  video = pathlib.Path(video)
  if not video.exists():
    raise DataError(f"video {video} does not exist: pass --video a folder of numbered frames or a video file")
  if video.is_dir():
    paths = layout.list_frames(video)
    return (decode.read_image(p, tuple(size)) for p in paths), len(paths)
  return decode.iter_video(video, tuple(size)), None


def stream_video(config, workdir, video, out=None, settings: Settings | None = None) -> dict:
  """Streams one video (folder of frames or file) through the meta-trained model of ``workdir``.

  Writes to ``out`` (default ``workdir/stream/<video name>``), each file atomically: ``scores.csv`` (frame, raw
  terms, score, normal, updated, reset, drift), ``updates.jsonl`` (one record per online step), ``scores.png``
  and ``drift.png``, ``summary.json``. Returns the summary.
  """
  from jaxvad.meta import train as meta_train_lib  # pylint: disable=g-import-not-at-top
  from jaxvad.utils import atomic_write_json, atomic_write_text  # pylint: disable=g-import-not-at-top
  s = settings or settings_from_config(config)
  t = int(config.data.t)
  frames, n = _frames(video, config.data.size)
  if n is not None and n < t + s.support + 1:
    raise DataError(f"video {video} has {n} frames: online adaptation with t = {t} and online.support = "
                    f"{s.support} needs at least {t + s.support + 1}; use a longer video or lower online.support")
  theta, alpha, frozen = meta_train_lib.load_meta(config, workdir)
  video = pathlib.Path(video)
  res = run_stream(config, theta, alpha, frozen, frames, s, name=str(video))
  out = pathlib.Path(out or pathlib.Path(workdir) / "stream" / video.stem)
  rows = res["rows"]
  names = list(rows[0]["terms"])
  lines = [",".join(["frame", *names, "score", "normal", "updated", "reset", "drift"])]
  lines += [",".join([str(r["frame"]), *(f"{r['terms'][m]:.6g}" for m in names), f"{r['score']:.6g}",
                      str(int(r["normal"])), str(int(r["updated"])), str(int(r["reset"])), f"{r['drift']:.6g}"])
            for r in rows]
  atomic_write_text(out / "scores.csv", "\n".join(lines) + "\n")
  atomic_write_text(out / "updates.jsonl", "".join(json.dumps(u) + "\n" for u in res["updates"]))
  plot_stream(res, out, max_drift=s.max_drift)
  summary = {"video": str(video), "workdir": str(workdir), "num_frames": rows[-1]["frame"] + 1,
             "num_scored": len(rows), "first_scored_frame": rows[0]["frame"], "threshold": res["threshold"],
             "threshold_last": res["threshold_last"], "settings": dataclasses.asdict(s), "score_weights": score_weights(config, rows[0]["terms"]),
             **{key: res[key] for key in ("num_updates", "num_resets", "num_abnormal", "num_paused", "seconds")},
             "max_drift_seen": max([u["drift"] for u in res["updates"]], default=0.0)}
  atomic_write_json(out / "summary.json", summary, indent=2)
  log.info("streamed %d frames of %s: %d online steps, %d resets, %d abnormal frames -> %s", len(rows), video,
           res["num_updates"], res["num_resets"], res["num_abnormal"], out)
  return {**summary, "out": str(out)}


def plot_stream(res: dict, out, *, max_drift: float) -> list[pathlib.Path]:
  """``scores.png`` (score, threshold, online steps and resets) and ``drift.png`` (drift, max_drift, resets)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from jaxvad.utils import atomic_open  # pylint: disable=g-import-not-at-top
  rows = res["rows"]
  f = np.asarray([r["frame"] for r in rows])
  steps = [u["frame"] for u in res["updates"] if not u["reset"]]
  resets = [u["frame"] for u in res["updates"] if u["reset"]]
  paths = []
  for name, y, ylabel, line in (("scores.png", [r["score"] for r in rows], "anomaly score",
                                 [r["threshold"] for r in rows]),
                                ("drift.png", [r["drift"] for r in rows], "|theta - theta_K| / |theta_K|",
                                 [max_drift] * len(rows))):
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(f, y, lw=1, label=ylabel)
    ax.step(f, line, where="post", color="k", ls="--", lw=0.8,
            label="threshold" if name == "scores.png" else "max_drift")
    for x in steps:
      ax.axvline(x, color="tab:green", alpha=0.25, lw=0.8)
    for x in resets:
      ax.axvline(x, color="tab:red", alpha=0.6, lw=1)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{name[:-4]}: {len(steps)} online steps (green), {len(resets)} resets (red)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(out) / name
    with atomic_open(path, "wb") as fh:
      fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    paths.append(path)
  return paths
