"""MPN's unsupervised model: the frame-prediction autoencoder with a DPU (SPEC 3.1-3.3).

Encoder + U-Net decoder (SPEC 2, `backbone`) + Dynamic Prototype Unit (`dpu.DPU`) +
prediction head. The DPU plug point is a resolution divisor (MPN Table 5):

  plug = 1  (default, the reference) the DPU reads the full-resolution decoder
            output (128w channels) and the head predicts from F + F~.
  plug = 2, 4, 8  the DPU reads the output of the decoder stage at 1/plug resolution
            (the two-convolution block after the upsampling and skip concatenation;
            at 1/8 the block on the latent z) with 128w / 256w / 512w channels, and the
            rest of the decoder continues on F + F~ ("the output encoding of DPU goes
            through the remaining AE layers", paper Sec. 3.1).

The decoder is `backbone.Decoder` itself, unchanged: for plug > 1 the DPU is
inserted after that stage with `flax.linen.intercept_methods`, so there is one
decoder definition for every model.

``use_dpu=False`` is the "AE w/o DPU" ablation (MPN Tables 1 and 4): the same
parameters as `baseline.FramePredictor`, trained with the frame loss only.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import backbone
from jaxvad.models import baseline
from jaxvad.models import dpu as dpu_lib
from jaxvad.errors import ConfigError

Dtype = Any
PLUG_POINTS = (1, 2, 4, 8)


class MPN(nn.Module):
  """Predicts frame t+1 from t frames through a DPU.

  Attributes:
    width: channel multiplier (1.0 = paper widths).
    norm: "none" (MPN reference) | "batch" | "group".
    upsample: "conv_transpose" | "conv_transpose_subpixel" | "subpixel" (see `backbone.Upsample`).
    num_prototypes: M (MPN Table 6).
    plug: DPU resolution divisor, one of 1, 2, 4, 8 (MPN Table 5).
    use_dpu: False gives the plain autoencoder ("AE w/o DPU").
    attention_init_std: init std of the DPU attention kernel (`dpu.DPU`); None = LeCun normal.
    conv: how convolutions are computed, one of `conv_impl.IMPLS` ("xla", "im2col", "auto"; same parameters).
    dtype: compute dtype (parameters, the DPU maths and losses stay float32).
  """

  width: float = 1.0
  norm: str = "none"
  upsample: str = "conv_transpose"
  num_prototypes: int = 10
  plug: int = 1
  use_dpu: bool = True
  attention_init_std: float | None = None
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False):
    """Args: inputs: [B, T, H, W, 3] in [-1, 1]. Returns (pred [B, H, W, 3], aux).

    aux: "z" [B, H/8, W/8, 512w], "decoder_features" (the head's input before the DPU
    for plug 1, else the decoder output) and, with the DPU, its intermediates
    ("normalcy_maps", "prototypes", "retrieval", "nearest", "features", "retrieved").
    """
    if self.plug not in PLUG_POINTS:
      raise ConfigError(f"plug must be one of {PLUG_POINTS}, got {self.plug}")
    x = backbone.stack_frames(inputs).astype(self.dtype)  # [B, H, W, 3T]
    z, skips = backbone.Encoder(self.width, self.norm, self.dtype, conv=self.conv, name="encoder")(x, train)
    decoder = backbone.Decoder(self.width, self.norm, self.upsample, dtype=self.dtype, conv=self.conv,
                               name="decoder")
    head = backbone.OutputHead(self.width, dtype=self.dtype, conv=self.conv, name="head")
    if not self.use_dpu:
      feats = decoder(z, skips, train)  # [B, H, W, 128w]
      return head(feats), {"z": z, "decoder_features": feats}

    unit = dpu_lib.DPU(self.num_prototypes, dtype=self.dtype,
                       attention_init_std=self.attention_init_std, name="dpu")
    if self.plug == 1:
      feats = decoder(z, skips, train)  # [B, H, W, 128w]
      out, dpu_aux = unit(feats)  # [B, H, W, 128w]
    else:
      out, dpu_aux = _decode_with_plug(decoder, unit, z, skips, train, x.shape[1] // self.plug)
      feats = out
    return head(out), {"z": z, "decoder_features": feats, **dpu_aux}


def _decode_with_plug(decoder, unit, z, skips, train: bool, height: int):
  """Runs `decoder` with `unit` applied to the output of its stage at spatial `height`.

  The decoder has exactly one `ConvBlock` per resolution; the interceptor replaces
  that block's output x with DPU(x) = F + F~ and records the DPU's aux.
  """
  captured = {}

  def plug_dpu(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if (context.method_name == "__call__" and isinstance(module, backbone.ConvBlock)
        and isinstance(module.parent, backbone.Decoder) and out.shape[1] == height):
      out, captured["aux"] = unit(out)  # [B, height, W/plug, C]
    return out

  with nn.intercept_methods(plug_dpu):
    out = decoder(z, skips, train)  # [B, H, W, 128w]
  if "aux" not in captured:
    raise ConfigError(f"no decoder stage at height {height} to plug the DPU into")
  return out, captured["aux"]


def loss_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> tuple[jax.Array, dict]:
  """L = L_fra + lambda1 (L_c + lambda2 L_d) (MPN Eq. 3-8, SPEC 3.2).

  Args:
    pred: [B, H, W, 3] predicted frame t+1.
    aux: model intermediates; without "prototypes" (use_dpu False) only L_fra.
    window: [B, T+1, H, W, 3]; the last frame is the target.
    config: model config with lambda1, lambda2 (paper 0.01; the reference code 1e-4),
      gamma (the diversity margin) and compactness: "sum" over channels (SPEC 3.2, paper
      Eq. 6) or "mean" over channels (the reference code's MSELoss, C times smaller);
      compactness_channels (optional) replaces C in that mean, so that a narrower model
      keeps the reference's weight per unit-norm feature (128 = the reference's C).
  Returns: (loss, metrics with l_fra, l_c, l_d and the collapse diagnostic protos_used,
    the effective number of prototypes that positions pick, `dpu.prototype_usage`).
  """
  l_fra, metrics = baseline.loss_fn(pred, aux, window, config)
  if "prototypes" not in aux:
    return l_fra, metrics
  l_c = jnp.mean(dpu_lib.compactness_error(aux["features"], aux["prototypes"], aux["retrieval"]))
  reduction = config.get("compactness", "sum")
  if reduction == "mean":  # The reference code's MSELoss: the squared distance also averaged over C.
    # compactness_channels fixes the divisor (e.g. the reference's 128 at any width); None = C.
    l_c = l_c / (config.get("compactness_channels") or aux["features"].shape[-1])
  elif reduction != "sum":
    raise ConfigError(f"model.compactness must be 'sum' (SPEC 3.2, paper Eq. 6) or 'mean' (reference code), "
                     f"got {reduction!r}")
  l_d = jnp.mean(dpu_lib.diversity_error(aux["prototypes"], config.gamma))
  loss = l_fra + config.lambda1 * (l_c + config.lambda2 * l_d)
  used = dpu_lib.prototype_usage(jax.lax.stop_gradient(aux["retrieval"]))
  return loss, {**metrics, "l_c": l_c, "l_d": l_d, "protos_used": used}


MAX_L_D = 0.95  # Collapsed prototypes: l_d ~ gamma (reference init: 0.998 after 140 steps, docs/mpn.md).


def health_fn(metrics: dict, model_config) -> list[str]:
  """Warnings from window-averaged training metrics: prototypes that never separated.

  With all M prototypes equal, L_d sits at gamma where its hinge has no gradient, so they stay equal
  (the reference attention init does this; docs/mpn.md). Nothing for M = 1 or without the DPU.
  """
  if "l_d" not in metrics or model_config.get("num_prototypes", 10) < 2:
    return []
  limit = MAX_L_D * model_config.get("gamma", 1.0)
  if float(metrics["l_d"]) <= limit:
    return []
  return [f"MPN prototype collapse: l_d = {float(metrics['l_d']):.3f} > {limit:g} (all prototypes alike; "
          f"model.attention_init_std={model_config.get('attention_init_std')!r}, 3.0 starts them apart, "
          f"see docs/mpn.md)"]


def score_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> dict:
  """S_fea (MPN Sec. 3.4, SPEC 3.3): the compactness error L_c of each window, [B].

  High is abnormal ("feature_error" in `evaluate.metrics.HIGH_IS_NORMAL`). Nothing
  without the DPU (PSNR only).
  """
  del pred, window, config
  if "prototypes" not in aux:
    return {}
  return {"feature_error": dpu_lib.compactness_error(aux["features"], aux["prototypes"], aux["retrieval"])}
