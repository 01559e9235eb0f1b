"""Exact sub-pixel form of the 3x3 stride-2 'SAME' transposed convolution (SPEC 2).

The references upsample with a 3x3 stride-2 transposed convolution. On XLA:CPU the
gradient of ``lax.conv_transpose`` is ~50x slower than its forward, so this module
computes the *same* function (same 3x3 kernel and bias parameters, same outputs and
gradients up to float rounding) as one ordinary stride-1 2x2 convolution to 4*Cout
channels followed by depth-to-space.

Derivation (one spatial axis; flax's ``transpose_kernel=False``, so the kernel is not
flipped). ``lax.conv_transpose(..., strides=2, padding="SAME")`` with k=3 dilates x by
2 (``xd[2i] = x[i]``, zeros between), pads it (2, 1) and correlates with w, so
``y[o] = sum_k xd[o + k - 2] w[k]``. Hence

  y[2i]     = w[0] x[i-1] + w[2] x[i]      (phase 0: taps 0 and 2)
  y[2i + 1] =               w[1] x[i]      (phase 1: tap 1 only)

i.e. every output phase is a 2-tap correlation over the window (x[i-1], x[i]): a
stride-1 convolution with padding (1, 0) and per-phase taps ``[[0, 2], [-, 1]]``
(``-`` = zero). In 2D the phase (a, b) kernel is the outer product of the two axes'
tap selections, so all four phases are one 2x2 convolution with 4*Cout outputs
ordered (a, b, Cout), which `depth_to_space` interleaves into [2H, 2W].

Note: this is JAX/flax's SAME convention. PyTorch's ``ConvTranspose2d(3, 2, 1,
output_padding=1)`` looks forward instead (``y[2i] = w[1] x[i]``,
``y[2i+1] = w[2] x[i] + w[0] x[i+1]``); same parameter count, shifted taps.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvad.models import conv_impl

Dtype = Any
PrecisionLike = Any

_DIMS = ("NHWC", "HWIO", "NHWC")

# _PHASE_TAPS[a][p]: the 1D kernel tap used by output phase a at window position p,
# where the window is (x[i-1], x[i]); 3 indexes the appended zero tap.
_PHASE_TAPS = np.array([[0, 2], [3, 1]], dtype=np.int32)  # [a, p]


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """Rearranges [B, H, W, b*b*C] into [B, b*H, b*W, C] (pixel shuffle).

  Channel ``(a * block + c) * C + k`` of input pixel (i, j) goes to output pixel
  (block*i + a, block*j + c), channel k.
  """
  b, h, w, c = x.shape
  c_out = c // (block * block)
  x = x.reshape(b, h, w, block, block, c_out)  # [B, H, W, b, b, C]
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, H, b, W, b, C]
  return x.reshape(b, h * block, w * block, c_out)  # [B, bH, bW, C]


def conv_transpose_3x3_s2(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
                          precision: PrecisionLike = None) -> jax.Array:
  """The reference: 3x3 stride-2 'SAME' transposed convolution, as ``nn.ConvTranspose``.

  Args:
    x: [B, H, W, Cin].
    kernel: [3, 3, Cin, Cout] (flax layout, ``transpose_kernel=False``).
    bias: [Cout] or None.
    precision: passed to ``lax.conv_transpose``.
  Returns:
    [B, 2H, 2W, Cout].
  """
  y = jax.lax.conv_transpose(x, kernel, strides=(2, 2), padding="SAME",
                             dimension_numbers=_DIMS, precision=precision)  # [B, 2H, 2W, Cout]
  if bias is not None:
    y = y + bias.reshape(1, 1, 1, -1)
  return y


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
  """Assembles the 2x2 stride-1 kernel of the four output phases from the 3x3 taps.

  Args:
    kernel: [3, 3, Cin, Cout].
  Returns:
    [2, 2, Cin, 4*Cout], output channels ordered (a, b, Cout) for `depth_to_space`.
  """
  kh, kw, cin, cout = kernel.shape
  if (kh, kw) != (3, 3):
    raise ValueError(f"expected a 3x3 kernel, got {kernel.shape}")
  kpad = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # [4, 4, Cin, Cout], row/col 3 zero
  taps = _PHASE_TAPS.T  # [p, a]
  k = kpad[taps]  # [p, a, 4, Cin, Cout]
  k = k[:, :, taps]  # [p, a, q, b, Cin, Cout]
  k = k.transpose(0, 2, 4, 1, 3, 5)  # [p, q, Cin, a, b, Cout]
  return k.reshape(2, 2, cin, 4 * cout)  # [2, 2, Cin, 4*Cout]


def subpixel_conv_transpose_3x3_s2(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
                                   precision: PrecisionLike = None,
                                   conv_general_dilated: Callable = jax.lax.conv_general_dilated
                                   ) -> jax.Array:
  """Exactly `conv_transpose_3x3_s2`, as a 2x2 stride-1 convolution and depth-to-space.

  Args:
    x: [B, H, W, Cin].
    kernel: [3, 3, Cin, Cout] (the transposed convolution's own kernel).
    bias: [Cout] or None.
    precision: passed to ``lax.conv_general_dilated``.
    conv_general_dilated: the convolution implementation (`conv_impl.get`).
  Returns:
    [B, 2H, 2W, Cout].
  """
  k = subpixel_kernel(kernel)  # [2, 2, Cin, 4*Cout]
  y = conv_general_dilated(x, k, window_strides=(1, 1), padding=((1, 0), (1, 0)),
                                   dimension_numbers=_DIMS, precision=precision)  # [B, H, W, 4*Cout]
  y = depth_to_space(y, 2)  # [B, 2H, 2W, Cout]
  if bias is not None:
    y = y + bias.reshape(1, 1, 1, -1)
  return y


class SubpixelConvTranspose(nn.Module):
  """Drop-in for ``nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME")``.

  Declares the same parameters ("kernel" [3, 3, Cin, Cout], "bias" [Cout]) with the
  same initialisers, so under the same module name the parameter trees, initial
  values and outputs of the two are interchangeable; computes the output with
  `subpixel_conv_transpose_3x3_s2`.

  Attributes:
    features: output channels Cout.
    use_bias: whether to add a bias.
    dtype: compute dtype (None: from the inputs and parameters, as flax).
    param_dtype: parameter dtype.
    precision: convolution precision.
    kernel_init: kernel initialiser (flax's ConvTranspose default).
    bias_init: bias initialiser (flax's ConvTranspose default).
    conv: how the 2x2 convolution is computed, one of `conv_impl.IMPLS`.
  """

  features: int
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  precision: PrecisionLike = None
  kernel_init: Callable = nn.linear.default_kernel_init
  bias_init: Callable = nn.initializers.zeros_init()
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x: [B, H, W, Cin]. Returns [B, 2H, 2W, Cout]."""
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return subpixel_conv_transpose_3x3_s2(x, kernel, bias, precision=self.precision,
                                          conv_general_dilated=conv_impl.get(self.conv))
