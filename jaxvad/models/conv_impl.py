"""Convolution implementations behind the models' ``nn.Conv`` layers (``model.conv``; issue 7 fast path).

  "xla"     ``lax.conv_general_dilated``: XLA's own convolution (the default on GPU/TPU).
  "im2col"  the same convolution as one matrix product: the K = kh*kw shifted views of the padded
            input are concatenated along channels ([B*H*W, K*Cin], "im2col") and multiplied by the
            kernel reshaped to [K*Cin, Cout]. The forward and both gradients are then plain dots,
            which XLA:CPU hands to its fast matrix-multiply library, while its own convolution
            kernels, and above all their gradients, are slower (`experiments/results/`).
  "auto"    per layer, when the model is traced: "im2col" on CPU for layers whose patch matrix is
            small (`AUTO_MAX_PATCH_BYTES`), "xla" for the others and on every other backend.

Both compute the same function with the same parameters (tested to float rounding, value and
gradient); checkpoints are interchangeable. The im2col path covers what the models use (NHWC
input, HWIO kernel, stride 1, no dilation, one feature group); anything else falls back to XLA.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvad.errors import ConfigError

IMPLS = ("xla", "im2col", "auto")


def _is_nhwc_hwio(lhs, rhs, dimension_numbers) -> bool:
  """True when ``dimension_numbers`` are NHWC x HWIO -> NHWC for these 4-D operands."""
  if lhs.ndim != 4 or rhs.ndim != 4:
    return False
  want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  if dimension_numbers is None:  # lax's default is NCHW / OIHW.
    return False
  got = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  return got == want


def _all_ones(values) -> bool:
  return values is None or all(v == 1 for v in values)


def im2col_conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                                padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                                feature_group_count: int = 1, batch_group_count: int = 1,
                                precision=None, preferred_element_type=None) -> jax.Array:
  """`lax.conv_general_dilated` as im2col + one dot where it applies (see the module docstring).

  Args: as `lax.conv_general_dilated`. Returns: [B, Ho, Wo, Cout] (NHWC).
  """
  supported = (_is_nhwc_hwio(lhs, rhs, dimension_numbers) and _all_ones(window_strides)
               and _all_ones(lhs_dilation) and _all_ones(rhs_dilation)
               and feature_group_count == 1 and batch_group_count == 1)
  if not supported:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type)
  kh, kw, cin, cout = rhs.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), (1, 1), padding)
  (pt, pb), (pl, pr) = padding
  b, h, w, _ = lhs.shape
  ho, wo = h + pt + pb - kh + 1, w + pl + pr - kw + 1
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))  # [B, H+pt+pb, W+pl+pr, Cin]
  if kh * kw == 1:
    cols = x  # [B, Ho, Wo, Cin]
  else:  # Tap (i, j) at channels [(i*kw + j)*Cin, ...): the order of rhs.reshape below.
    cols = jnp.concatenate([x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)],
                           axis=-1)  # [B, Ho, Wo, kh*kw*Cin]
  out = jnp.dot(cols.reshape(b * ho * wo, kh * kw * cin), rhs.reshape(kh * kw * cin, cout),
                precision=precision, preferred_element_type=preferred_element_type)  # [B*Ho*Wo, Cout]
  return out.reshape(b, ho, wo, cout)


# "auto" uses im2col on CPU only while the patch matrix [B*Ho*Wo, kh*kw*Cin] stays below this size:
# small maps with many channels (the U-Net's inner stages, the 12-channel input layer) gain, while
# for large maps (64x64 and up at 64+ channels) the patch matrix no longer fits in cache and XLA's
# own convolution wins (experiments/results/conv_bench.json).
AUTO_MAX_PATCH_BYTES = int(os.environ.get("JAXVAD_IM2COL_MAX_BYTES", 2 << 20))


def _auto(lhs, rhs, *args, **kwargs) -> jax.Array:
  if jax.default_backend() == "cpu" and lhs.ndim == 4 and rhs.ndim == 4:
    patch_bytes = lhs.shape[0] * lhs.shape[1] * lhs.shape[2] * rhs.shape[0] * rhs.shape[1] * rhs.shape[2] * 4
    if patch_bytes <= AUTO_MAX_PATCH_BYTES:
      return im2col_conv_general_dilated(lhs, rhs, *args, **kwargs)
  return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)


def get(name: str) -> Callable:
  """The ``conv_general_dilated`` function for ``model.conv`` = `name` (one of `IMPLS`)."""
  if name == "xla":
    return lax.conv_general_dilated
  if name == "im2col":
    return im2col_conv_general_dilated
  if name == "auto":
    return _auto
  raise ConfigError(f"model.conv must be one of {IMPLS}, got {name!r}")
