"""K-shot test-time adaptation and the few-shot table (MPN Sec. 3.4, Table 2; SPEC 3.5; docs/fewshot.md).

Per test video: start from an initialisation, take K support windows, adapt, score the rest of the video with
the adapted theta, reset for the next video. K = 0 is the un-adapted model. Every column of one table scores
the same frames: the first t + max(K) frames of each video are dropped for every K and every support protocol.

Rows (``METHODS``): "meta" (meta-learned init, one Meta-SGD step with the learned alpha), "meta_fo" (the same
from a first-order meta-training), "finetune" (meta-learned init, plain gradient steps with a fixed step size:
"Finetune from meta init"), "pretrained" (the pre-trained model without meta-training, plain gradient steps:
the rGAN/MPN "Finetune" baseline as readers understand it).

Support protocols (``SUPPORTS``): "test_first" (the paper's, Sec. 3.4: the first K windows of each test video;
they may contain labelled anomalies, reported per video by `abnormal_support`) and "train_random" (K windows of
the target camera's training videos, normal by construction, drawn once per camera from the seed; nested in K).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib

import jax
import numpy as np
import tqdm

from jaxvad.data.episodes import first_k_windows
from jaxvad.data.errors import DataError
from jaxvad.data.windows import gather_windows
from jaxvad.data.types import Split
from jaxvad.evaluate import scoring
from jaxvad.meta import core
from jaxvad.train import step as train_step_lib
from jaxvad.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("meta", "meta_fo", "finetune", "pretrained")
ADAPTATION = {"meta": "meta", "meta_fo": "meta", "finetune": "finetune", "pretrained": "finetune"}
INIT = {"meta": "meta", "meta_fo": "meta_fo", "finetune": "meta", "pretrained": "pretrained"}  # Whose theta.
LABELS = {"meta": "Meta", "meta_fo": "Meta (1st order)", "finetune": "Finetune from meta init",
          "pretrained": "Pre-trained"}
SUPPORTS = ("test_first", "train_random")


@dataclasses.dataclass
class Adapter:
  """Jitted adaptation and prediction for one model (compiled once per K).

  Attributes:
    mdef: the model definition (`jaxvad.models.ModelDef`).
    model_config: the model config (loss weights).
    frozen: the frozen autoencoder parameters (encoder + decoder).
    inner_steps: Meta-SGD inner steps at test time (paper: 1).
    finetune_lr, finetune_steps: the fine-tuning rows' fixed step size and step count.
    finetune_by_method: {method: (lr, steps)} overriding them per row (e.g. chosen by `finetune_select`).
  """

  mdef: object
  model_config: object
  frozen: dict
  inner_steps: int = 1
  finetune_lr: float = 1e-4
  finetune_steps: int = 1
  finetune_by_method: dict | None = None

  def __post_init__(self):
    task_loss = core.make_task_loss(self.mdef.module, self.mdef.loss_fn, self.model_config)
    self._meta = {}  # (H, W) -> jitted Meta-SGD adaptation, its CPU compiler options chosen by frame size.
    self._finetune = {}  # steps -> jitted (theta, frozen, support, lr) -> theta.
    self._task_loss = task_loss

    def predict(theta, frozen, window):
      variables = {"params": core.merge_params(theta, frozen)}
      pred, aux = self.mdef.module.apply(variables, window[:, :-1], train=False)  # The target is never read.
      return {"pred": pred, **self.mdef.score_fn(pred, aux, window, self.model_config)}

    self._predict = jax.jit(predict)

  def adapt(self, method: str, theta, alpha, support: np.ndarray):
    """theta adapted on ``support`` [K, T+1, H, W, 3] by a method of ``METHODS`` (K = 0: theta)."""
    if support.shape[0] == 0:
      return theta
    original, method = method, ADAPTATION.get(method, method)
    if method == "meta":
      hw = tuple(support.shape[2:4])  # support [K, T+1, H, W, 3]
      if hw not in self._meta:
        self._meta[hw] = jax.jit(lambda theta, alpha, frozen, sup: core.adapt(
            self._task_loss, theta, alpha, frozen, sup, num_steps=self.inner_steps),
                                 compiler_options=train_step_lib.cpu_meta_compiler_options(hw))
      return self._meta[hw](theta, alpha, self.frozen, support)
    if method == "finetune":
      lr, steps = self.finetune_settings(original)
      if lr == 0 or steps == 0:
        return theta
      if steps not in self._finetune:
        self._finetune[steps] = jax.jit(lambda th, fr, sup, lr, n=steps: core.finetune(
            self._task_loss, th, fr, sup, lr=lr, num_steps=n))
      return self._finetune[steps](theta, self.frozen, support, lr)
    raise ConfigError(f"unknown adaptation method {method!r}; use meta or finetune")

  def finetune_settings(self, method: str) -> tuple[float, int]:
    """(step size, step count) of a fine-tuning row."""
    lr, steps = (self.finetune_by_method or {}).get(method, (self.finetune_lr, self.finetune_steps))
    return float(lr), int(steps)

  def predict_fn(self, theta):
    """A `scoring.score_split` predict function for the adapted theta."""
    return lambda windows: self._predict(theta, self.frozen, windows)


def train_support_windows(train: Split, scene: str, *, t: int, k: int, seed: int) -> np.ndarray:
  """Support protocol "train_random": K windows of the training videos of camera ``scene``, fixed by ``seed``.

  One random order of all (video, start) windows of the camera per (seed, scene); K shots are its first K, so
  the shots of K = 1 are among those of K = 5. Only ``train`` (normal training frames) is read.

  Returns:
    float32 [K, T+1, H, W, 3] in [-1, 1].
  """
  pairs = [(i, s) for i, v in enumerate(train.videos) if v.scene == scene for s in range(v.num_frames - t)]
  if len(pairs) < k:
    raise DataError(f"target camera {scene} of {train.dataset}/{train.split} has {len(pairs)} training windows, "
                    f"fewer than K = {k} shots; lower fewshot.shots")
  rng = np.random.default_rng([seed, zlib.crc32(scene.encode())])
  chosen = [pairs[j] for j in rng.permutation(len(pairs))[:k]]
  out = np.empty((k, t + 1) + train.videos[0].frames.shape[1:], np.float32)  # [K, T+1, H, W, 3]
  for r, (i, s) in enumerate(chosen):
    gather_windows(train.videos[i].frames, np.asarray([s]), t, out=out[r:r + 1])
  return out


def abnormal_support(split: Split, *, t: int, shots) -> dict | None:
  """Protocol "test_first": per test video and K, how many of its K support windows hold a labelled anomaly.

  Window s covers frames s .. s+t. Returns {video: {K: count}} (None when the split has no labels).
  """
  if any(v.labels is None for v in split.videos):
    return None
  out = {}
  for v in split.videos:
    lab = np.asarray(v.labels) > 0
    out[v.name] = {int(k): int(sum(lab[s:s + t + 1].any() for s in range(int(k)))) for k in shots}
  return out


def score_video_adapted(adapter: Adapter, method: str, theta, alpha, split: Split, index: int, *,
                        t: int, k: int, first_window: int, batch_size: int,
                        support: np.ndarray | None = None) -> scoring.VideoScores:
  """Adapts on ``support`` (default: the first ``k`` windows of video ``index``), scores it from t + first_window."""
  video = split.videos[index]
  if support is None:
    support = first_k_windows(video, t, k)  # [K, T+1, H, W, 3]
  adapted = adapter.adapt(method, theta, alpha, support)
  one = Split(split.dataset, split.split, [video])
  return scoring.score_split(one, adapter.predict_fn(adapted), t=t, batch_size=batch_size,
                             first_window=first_window, progress=False)


def fewshot_table(adapter: Adapter, theta, alpha, split: Split, *, t: int, shots=(0, 1, 5, 10),
                  methods=("meta", "finetune"), batch_size: int = 32, score_weights=None,
                  progress: bool = True, support: str = "test_first", train_split: Split | None = None,
                  seed: int = 0, inits: dict | None = None, unadapted: dict | None = None) -> dict:
  """AUC of every (method, K) on ``split``, all columns on the same frames.

  Args:
    adapter, theta, alpha: the model; (theta, alpha) is the meta-learned initialisation ("meta", "finetune").
    split: the target's test videos.
    support: "test_first" or "train_random" (``SUPPORTS``); the latter needs ``train_split`` (the target's
      training videos) and draws the shots from them with ``seed``.
    inits: {"pretrained": (theta, None), "meta_fo": (theta, alpha)}: the other rows' initialisations.
    unadapted: a dict shared by the tables of one run: K = 0 (no support, so the same for every support
      protocol) is scored once per initialisation and reused from here (filled on first use).

  Returns:
    {"shots": [...], "methods": [...], "support": ..., "first_window": max(K), "auc": {method: {K: auc}},
     "per_video_auc": {method: {K: ...}}, "num_frames_scored": n, "dropped_note": str,
     "abnormal_support": {video: {K: n}} or None (test_first only), "results": {method: {K: evaluate_scores
     dict}}}. K = 0 is computed once per initialisation (no adaptation).
  """
  if support not in SUPPORTS:
    raise ValueError(f"support must be one of {SUPPORTS}, got {support!r}")
  if support == "train_random" and train_split is None:
    raise ValueError("support 'train_random' needs train_split (the target's training videos)")
  inits = {"meta": (theta, alpha), **(inits or {})}
  missing = sorted({INIT.get(m, m) for m in methods} - set(inits))
  if missing:
    raise ValueError(f"methods {list(methods)} need the initialisations {missing}")
  shots = sorted(int(k) for k in shots)
  first_window = max(shots)
  out = {"shots": shots, "methods": list(methods), "support": support, "first_window": first_window,
         "auc": {}, "per_video_auc": {}, "results": {}}
  jobs, first_of = [], {}  # first_of: initialisation -> the method whose K = 0 column it computes.
  for m in methods:
    for k in shots:
      if k == 0:
        if INIT.get(m, m) in first_of:
          continue
        first_of[INIT.get(m, m)] = m
      jobs.append((m, k))
  bar = tqdm.tqdm(total=len(jobs) * len(split.videos), disable=not progress, desc=f"few-shot ({support})",
                  unit="video")
  train_support = {}
  cache = {}
  unadapted = {} if unadapted is None else unadapted
  for method, k in jobs:
    th, al = inits[INIT.get(method, method)]
    if k == 0 and INIT.get(method, method) in unadapted:
      cache[(method, k)] = unadapted[INIT.get(method, method)]
      bar.update(len(split.videos))
      continue
    parts = []
    for i, video in enumerate(split.videos):
      shots_k = None
      if support == "train_random":
        if (video.scene, k) not in train_support:
          train_support[(video.scene, k)] = train_support_windows(train_split, video.scene, t=t, k=k, seed=seed)
        shots_k = train_support[(video.scene, k)]
      parts.append(score_video_adapted(adapter, method, th, al, split, i, t=t, k=k, first_window=first_window,
                                       batch_size=batch_size, support=shots_k))
      bar.update(1)
    res = scoring.evaluate_scores(scoring.merge_video_scores(parts), score_weights=score_weights)
    cache[(method, k)] = res
    if k == 0:
      unadapted[INIT.get(method, method)] = res
  bar.close()
  for method in methods:
    out["auc"][method], out["per_video_auc"][method], out["results"][method] = {}, {}, {}
    for k in shots:
      res = cache[(first_of[INIT.get(method, method)], 0)] if k == 0 else cache[(method, k)]
      out["auc"][method][k] = res["auc"]
      out["per_video_auc"][method][k] = res["per_video_auc"]
      out["results"][method][k] = res
  any_res = next(iter(cache.values()))
  out["num_frames_scored"] = any_res["num_frames_scored"]
  out["dropped_note"] = any_res["dropped_note"]
  out["abnormal_support"] = abnormal_support(split, t=t, shots=shots) if support == "test_first" else None
  return out


def table_rows(table: dict, target: str) -> list[dict]:
  """Rows shaped like the paper's Table 2: one per method, a column per K."""
  rows = []
  for method in table["methods"]:
    row = {"target": target, "method": LABELS.get(method, method)}
    if "support" in table:
      row["support"] = table["support"]
    row.update({f"K={k}": table["auc"][method][k] for k in table["shots"]})
    rows.append(row)
  return rows
