"""PGM: the two-branch autoencoder with a prototype-guided memory (paper Sec. III; SPEC 4).

Shared encoder (SPEC 2) -> z [B, H/8, W/8, 512w] (Eq. 1); the memory (`memory.Memory`)
transforms z into z^ of the same shape (Eq. 2); two decoders read z^:

* prediction branch: `backbone.Decoder` with skips + `backbone.OutputHead` -> I^_{t+1} (Eq. 3);
* RGB-difference branch: the same decoder **without skips** (so the input frames cannot be
  copied through, paper Sec. III-A) + a head with 3t outputs, 2 tanh -> x^_diff in [-2, 2]
  (Eq. 4), target x_diff = x_clips - I_{t+1} (Eq. 5), channels laid out like
  `backbone.stack_frames` (oldest frame first).

Switches (Table II, Table IV): ``use_memory`` / ``num_items`` (N = 0 means no memory),
``use_diff``, ``rule_update``, ``grad_items``; ``use_dis`` is a loss switch (config).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvad.models import backbone
from jaxvad.models import baseline
from jaxvad.models import memory as memory_lib

Dtype = Any


class PGM(nn.Module):
  """Predicts frame t+1 (and the stacked RGB difference) from t frames through the memory.

  Attributes:
    width: channel multiplier (1.0 = paper widths).
    norm: "none" | "batch" | "group".
    upsample: see `backbone.Upsample`.
    num_items: N memory items (paper default 100; 0 = no memory, Table IV).
    use_memory: False makes the decoders read z directly (Table II).
    use_diff: the RGB-difference branch (Table II).
    rule_update: the memory update rule, Eq. 11-12 (training only).
    grad_items: items also trained by gradient (see `memory`).
    update_scope: "all" (paper Eq. 11, default) or "nearest" (MNAD's rule), see `memory.update`.
    conv: how convolutions are computed, one of `conv_impl.IMPLS` ("xla", "im2col", "auto"; same parameters).
    dtype: compute dtype (parameters, memory maths and losses stay float32).
  """

  width: float = 1.0
  norm: str = "none"
  upsample: str = "conv_transpose"
  num_items: int = 100
  use_memory: bool = True
  use_diff: bool = True
  rule_update: bool = True
  grad_items: bool = True
  update_scope: str = "all"
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @property
  def has_memory(self) -> bool:
    return self.use_memory and self.num_items > 0

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False):
    """Args: inputs: [B, T, H, W, 3] in [-1, 1]. Returns (pred [B, H, W, 3], aux).

    aux: "z", "z_hat", with the memory all of `memory.Memory`'s aux, with the
    difference branch "diff" [B, H, W, 3T].
    """
    t = inputs.shape[1]
    x = backbone.stack_frames(inputs).astype(self.dtype)  # [B, H, W, 3T]
    encoder = backbone.Encoder(self.width, self.norm, self.dtype, conv=self.conv, name="encoder")
    z, skips = encoder(x, train)  # Eq. 1
    aux = {"z": z}
    z_hat = z
    if self.has_memory:
      z_hat, mem_aux = memory_lib.Memory(self.num_items, self.rule_update, self.grad_items, self.update_scope,
                                        name="memory")(z, train)  # [B, H/8, W/8, 512w], Eq. 2
      z_hat = z_hat.astype(self.dtype)
      aux.update(mem_aux)
    aux["z_hat"] = z_hat
    decoder = backbone.Decoder(self.width, self.norm, self.upsample, dtype=self.dtype, conv=self.conv,
                               name="decoder")
    feats = decoder(z_hat, skips, train)  # [B, H, W, 128w]
    head = backbone.OutputHead(self.width, dtype=self.dtype, conv=self.conv, name="head")
    pred = head(feats)  # [B, H, W, 3], Eq. 3
    if self.use_diff:
      dfeats = backbone.Decoder(self.width, self.norm, self.upsample, use_skips=False, dtype=self.dtype,
                                conv=self.conv, name="diff_decoder")(z_hat, skips, train)  # [B, H, W, 64w]
      diff_head = backbone.OutputHead(self.width, out_channels=3 * t, dtype=self.dtype, conv=self.conv,
                                      name="diff_head")
      aux["diff"] = 2.0 * diff_head(dfeats)  # [B, H, W, 3T], Eq. 4
    return pred, aux


def diff_target(window: jax.Array) -> jax.Array:
  """x_diff = x_clips - I_{t+1} (Eq. 5): [B, T+1, H, W, 3] -> [B, H, W, 3T], oldest first."""
  window = window.astype(jnp.float32)
  return backbone.stack_frames(window[:, :-1] - window[:, -1:])


def loss_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> tuple[jax.Array, dict]:
  """L = lambda_pred L_pred + lambda_diff L_diff + lambda_dis L_dis (Eq. 18).

  L_pred and L_diff are mean squared errors (Eq. 6-7, averaged over pixels and channels);
  L_dis (Eq. 17) is computed per sample (K = h * w queries) and averaged over the batch.

  Args:
    pred: [B, H, W, 3] predicted frame t+1.
    aux: the model's aux; terms are added for the parts present ("diff", "queries").
    window: [B, T+1, H, W, 3]; the last frame is the target.
    config: model config with lambda_pred, lambda_diff, lambda_dis, use_dis.
  Returns: (loss, metrics with l_pred and, where present, l_diff, l_dis, and the memory's health:
    items_used (items nearest to at least one query of the batch) and d_m (Eq. 26 averaged over
    items: the mean cosine of the items to their mean; 1 = every item the same, collapsed)).
  """
  l_pred, _ = baseline.loss_fn(pred, aux, window, config)  # Eq. 6
  loss = config.get("lambda_pred", 1.0) * l_pred
  metrics = {"l_pred": l_pred}
  if "diff" in aux:
    l_diff = jnp.mean(jnp.square(aux["diff"].astype(jnp.float32) - diff_target(window)))  # Eq. 7
    loss = loss + config.get("lambda_diff", 0.1) * l_diff
    metrics["l_diff"] = l_diff
  if "queries" in aux:
    metrics["items_used"] = aux["items_used"].astype(jnp.float32)
    items = jax.lax.stop_gradient(aux["items"])  # [N, C]
    metrics["d_m"] = jnp.mean(memory_lib.similarity(items, jnp.mean(items, axis=0, keepdims=True)))  # Eq. 26 / N
    if config.get("use_dis", True):
      l_dis = jnp.mean(memory_lib.discriminative_loss(aux["queries"], aux["items"], aux["nearest"]))
      loss = loss + config.get("lambda_dis", 1.0) * l_dis
      metrics["l_dis"] = l_dis
  return loss, metrics


# Memory-collapse thresholds of `health_fn`, from the quick synthetic config (docs/pgm.md): 60 steps
# with the paper's all-query update leave ~2 of 100 items in use and d_m near 1; MNAD's nearest
# rule keeps ~19 items in use and d_m far below.
MIN_ITEMS_USED_FRACTION = 0.05  # of N, and at least 2 items.
MAX_D_M = 0.9


def health_fn(metrics: dict, model_config) -> list[str]:
  """Warnings about a collapsing memory, read from window-averaged training metrics.

  Args:
    metrics: logged metrics ("items_used", "d_m" where the model has a memory).
    model_config: the model config (num_items, update_scope).
  Returns: one line per problem (empty when healthy or without memory).
  """
  warnings = []
  n = int(model_config.get("num_items", 0) or 0)
  scope = model_config.get("update_scope", "all")
  hint = (" (model.update_scope='all', the paper's rule, is known to collapse; 'nearest' does not, see docs/pgm.md)"
          if scope == "all" else "")
  if "items_used" in metrics and n > 0:
    floor = max(2.0, MIN_ITEMS_USED_FRACTION * n)
    if float(metrics["items_used"]) < floor:
      warnings.append(f"PGM memory collapse: only {float(metrics['items_used']):.1f} of {n} memory items are the "
                      f"nearest item of any query (threshold {floor:g}){hint}")
  if "d_m" in metrics and float(metrics["d_m"]) > MAX_D_M:
    warnings.append(f"PGM memory collapse: the items' mean cosine to their mean d_m = {float(metrics['d_m']):.3f} "
                    f"> {MAX_D_M} (1 = all items identical){hint}")
  return warnings


def score_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> dict:
  """D before min-max: DIST (Eq. 22), the per-window mean of ||z_i - m_nearest||, [B].

  High is abnormal ("memory_distance" in `evaluate.metrics.HIGH_IS_NORMAL`); the
  regularity score S = 0.6 P + 0.4 (1 - D) (Eq. 25) is
  ``eval.score_weights = {"psnr": 0.6, "memory_distance": 0.4}``. Nothing without memory.
  """
  del pred, window, config
  if "queries" not in aux:
    return {}
  return {"memory_distance": aux["memory_distance"]}


def distances_report(module: PGM, variables, split, t: int, max_windows: int = 64,
                     batch_size: int = 16) -> dict | None:
  """Fig. 9's D_m and D_q (`memory.distances`) over up to ``max_windows`` test windows.

  Windows are spread evenly over the videos of ``split``; the memory read is the
  evaluation one (train=False). Returns None for a model without memory.
  """
  if not module.has_memory:
    return None
  index = [(v, f) for v, video in enumerate(split.videos) for f in range(t, video.frames.shape[0])]
  picks = [index[i] for i in np.linspace(0, len(index) - 1, min(max_windows, len(index))).astype(int)]
  apply = jax.jit(lambda v, x: module.apply(v, x, train=False)[1])
  queries, items = [], None
  for s in range(0, len(picks), batch_size):
    clips = np.stack([split.videos[v].frames[f - t:f] for v, f in picks[s:s + batch_size]])
    aux = apply(variables, clips.astype(np.float32) / 127.5 - 1.0)  # [b, T, H, W, 3] in [-1, 1]
    queries.append(np.asarray(aux["queries"]).reshape(-1, aux["queries"].shape[-1]))  # [b*K, C]
    items = aux["items"]
  report = memory_lib.distances(items, np.concatenate(queries))
  report["num_windows"] = len(picks)
  return report
