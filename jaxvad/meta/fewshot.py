"""K-shot test-time adaptation and the few-shot table (MPN Sec. 3.4, Table 2; SPEC 3.5).

Per test video: start from the meta-learned theta, take the video's first K windows
as shots, adapt (Meta: one Meta-SGD step with the learned alpha; Finetune: plain
gradient steps with a fixed learning rate, rGAN's "Finetune" row), score the rest of
the video with the adapted theta, reset for the next video. K = 0 is the un-adapted
model. Every column of one table scores the same frames: the first t + max(K) frames
of each video are dropped for every K.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import numpy as np
import tqdm

from jaxvad.data.episodes import first_k_windows
from jaxvad.data.types import Split
from jaxvad.evaluate import scoring
from jaxvad.meta import core
from jaxvad.errors import ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Adapter:
  """Jitted adaptation and prediction for one model (compiled once per K).

  Attributes:
    mdef: the model definition (`jaxvad.models.ModelDef`).
    model_config: the model config (loss weights).
    frozen: the frozen autoencoder parameters (encoder + decoder).
    inner_steps: Meta-SGD inner steps at test time (paper: 1).
    finetune_lr, finetune_steps: the Finetune baseline's fixed learning rate and steps.
  """

  mdef: object
  model_config: object
  frozen: dict
  inner_steps: int = 1
  finetune_lr: float = 1e-4
  finetune_steps: int = 1

  def __post_init__(self):
    task_loss = core.make_task_loss(self.mdef.module, self.mdef.loss_fn, self.model_config)
    self._meta = jax.jit(lambda theta, alpha, frozen, support: core.adapt(
        task_loss, theta, alpha, frozen, support, num_steps=self.inner_steps))
    self._finetune = jax.jit(lambda theta, frozen, support: core.finetune(
        task_loss, theta, frozen, support, lr=self.finetune_lr, num_steps=self.finetune_steps))

    def predict(theta, frozen, window):
      variables = {"params": core.merge_params(theta, frozen)}
      pred, aux = self.mdef.module.apply(variables, window[:, :-1], train=False)  # The target is never read.
      return {"pred": pred, **self.mdef.score_fn(pred, aux, window, self.model_config)}

    self._predict = jax.jit(predict)

  def adapt(self, method: str, theta, alpha, support: np.ndarray):
    """theta adapted on ``support`` [K, T+1, H, W, 3] by "meta" or "finetune" (K = 0: theta)."""
    if support.shape[0] == 0:
      return theta
    if method == "meta":
      return self._meta(theta, alpha, self.frozen, support)
    if method == "finetune":
      return self._finetune(theta, self.frozen, support)
    raise ConfigError(f"unknown adaptation method {method!r}; use meta or finetune")

  def predict_fn(self, theta):
    """A `scoring.score_split` predict function for the adapted theta."""
    return lambda windows: self._predict(theta, self.frozen, windows)


def score_video_adapted(adapter: Adapter, method: str, theta, alpha, split: Split, index: int, *,
                        t: int, k: int, first_window: int, batch_size: int) -> scoring.VideoScores:
  """Adapts on the first ``k`` windows of video ``index`` and scores its frames from t + first_window on."""
  video = split.videos[index]
  support = first_k_windows(video, t, k)  # [K, T+1, H, W, 3]
  adapted = adapter.adapt(method, theta, alpha, support)
  one = Split(split.dataset, split.split, [video])
  return scoring.score_split(one, adapter.predict_fn(adapted), t=t, batch_size=batch_size,
                             first_window=first_window, progress=False)


def fewshot_table(adapter: Adapter, theta, alpha, split: Split, *, t: int, shots=(0, 1, 5, 10),
                  methods=("meta", "finetune"), batch_size: int = 32, score_weights=None,
                  progress: bool = True) -> dict:
  """AUC of every (method, K) on ``split``, all columns on the same frames.

  Returns:
    {"shots": [...], "methods": [...], "first_window": max(K), "auc": {method: {K: auc}},
     "per_video_auc": {method: {K: ...}}, "num_frames_scored": n, "dropped_note": str,
     "results": {method: {K: evaluate_scores dict}}}. K = 0 is computed once and shared
     by every method (no adaptation).
  """
  shots = sorted(int(k) for k in shots)
  first_window = max(shots)
  out = {"shots": shots, "methods": list(methods), "first_window": first_window,
         "auc": {}, "per_video_auc": {}, "results": {}}
  jobs = [(m, k) for m in methods for k in shots if not (k == 0 and m != methods[0])]
  bar = tqdm.tqdm(total=len(jobs) * len(split.videos), disable=not progress, desc="few-shot", unit="video")
  cache = {}
  for method, k in jobs:
    parts = []
    for i in range(len(split.videos)):
      parts.append(score_video_adapted(adapter, method, theta, alpha, split, i, t=t, k=k,
                                       first_window=first_window, batch_size=batch_size))
      bar.update(1)
    res = scoring.evaluate_scores(scoring.merge_video_scores(parts), score_weights=score_weights)
    cache[(method, k)] = res
  bar.close()
  for method in methods:
    out["auc"][method], out["per_video_auc"][method], out["results"][method] = {}, {}, {}
    for k in shots:
      res = cache[(methods[0], 0)] if k == 0 else cache[(method, k)]
      out["auc"][method][k] = res["auc"]
      out["per_video_auc"][method][k] = res["per_video_auc"]
      out["results"][method][k] = res
  any_res = next(iter(cache.values()))
  out["num_frames_scored"] = any_res["num_frames_scored"]
  out["dropped_note"] = any_res["dropped_note"]
  return out


def table_rows(table: dict, target: str) -> list[dict]:
  """Rows shaped like the paper's Table 2: one per method, a column per K."""
  rows = []
  for method in table["methods"]:
    row = {"target": target, "method": {"meta": "Meta", "finetune": "Finetune"}.get(method, method)}
    row.update({f"K={k}": table["auc"][method][k] for k in table["shots"]})
    rows.append(row)
  return rows
