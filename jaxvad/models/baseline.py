"""The frame-prediction autoencoder without DPU or memory (SPEC 2).

This is the "AE w/o DPU" row of MPN's Tables 1 and 4 and the "baseline" column of
PGM's Table II: encoder + U-Net decoder + prediction head, trained with the frame
loss only and scored by the PSNR of the predicted frame.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import backbone

Dtype = Any


class FramePredictor(nn.Module):
  """Predicts frame t+1 from t frames.

  Attributes:
    width: channel multiplier (1.0 = paper widths).
    norm: "none" | "batch" | "group".
    upsample: "conv_transpose" | "conv_transpose_subpixel" | "subpixel" (see `backbone.Upsample`).
    conv: how convolutions are computed, one of `conv_impl.IMPLS` ("xla", "im2col", "auto"; same parameters).
    dtype: compute dtype (parameters and losses stay float32).
  """

  width: float = 1.0
  norm: str = "none"
  upsample: str = "conv_transpose"
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False):
    """Args: inputs: [B, T, H, W, 3] in [-1, 1]. Returns (pred [B, H, W, 3], aux)."""
    x = backbone.stack_frames(inputs).astype(self.dtype)  # [B, H, W, 3T]
    z, skips = backbone.Encoder(self.width, self.norm, self.dtype, conv=self.conv, name="encoder")(x, train)
    decoder = backbone.Decoder(self.width, self.norm, self.upsample, dtype=self.dtype, conv=self.conv,
                               name="decoder")
    feats = decoder(z, skips, train)  # [B, H, W, 128w]
    head = backbone.OutputHead(self.width, dtype=self.dtype, conv=self.conv, name="head")
    pred = head(feats)  # [B, H, W, 3]
    return pred, {"z": z, "features": feats}


def loss_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> tuple[jax.Array, dict]:
  """L_fra: mean squared error of the predicted frame (MPN Eq. 6, PGM L_pred).

  Args:
    pred: [B, H, W, 3] predicted frame t+1.
    aux: model intermediates (unused by the baseline).
    window: [B, T+1, H, W, 3]; the last frame is the target.
    config: the model config (unused by the baseline).
  Returns: (loss, metrics).
  """
  del aux, config
  target = window[:, -1].astype(jnp.float32)  # [B, H, W, 3]
  l_fra = jnp.mean(jnp.square(pred.astype(jnp.float32) - target))
  return l_fra, {"l_fra": l_fra}


def score_fn(pred: jax.Array, aux: dict, window: jax.Array, config) -> dict:
  """Per-window scores beyond the prediction itself (none for the baseline: PSNR only)."""
  del pred, aux, window, config
  return {}
