"""The shared backbone of MPN and PGM (SPEC 2): a U-Net style encoder and decoder.

Both reference implementations code the same network: 3x3 'SAME' convolutions with
bias and ReLU, three 2x max-pools in the encoder, and three 2x upsamplings in the
decoder with skip connections. Widths are scaled by a multiplier so that CPU-sized
configs train in minutes; ``width=1.0`` gives the paper network (encoder
4,690,560 and decoder 8,480,960 parameters with 3x3 transposed-conv upsampling).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.models import conv_impl
from jaxvad.models.upsample import SubpixelConvTranspose
from jaxvad.models.upsample import depth_to_space  # noqa: F401  (re-exported)
from jaxvad.errors import ConfigError

Dtype = Any


def scaled(channels: int, width: float) -> int:
  """Channel count of a layer for a width multiplier (at least 4 channels)."""
  return max(4, int(round(channels * width)))


class Norm(nn.Module):
  """Optional normalisation: "none" (MPN reference), "batch" (MNAD reference) or "group"."""

  kind: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.kind == "none":
      return x
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=x.dtype)(x)
    if self.kind == "group":
      return nn.GroupNorm(num_groups=min(32, x.shape[-1] // 2), dtype=x.dtype)(x)
    raise ConfigError(f"unknown normalisation {self.kind!r}; use none, batch or group")


class ConvBlock(nn.Module):
  """Two 3x3 convolutions, each followed by optional norm and ReLU (the last ReLU optional)."""

  features: int
  norm: str = "none"
  last_activation: bool = True
  dtype: Dtype = jnp.float32
  conv: str = "xla"  # `conv_impl.IMPLS`: how the convolutions are computed (same parameters).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv_fn = conv_impl.get(self.conv)
    x = nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=conv_fn)(x)
    x = nn.relu(Norm(self.norm)(x, train))
    x = nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=conv_fn)(x)
    x = Norm(self.norm)(x, train)
    return nn.relu(x) if self.last_activation else x


class Upsample(nn.Module):
  """2x upsampling followed by optional norm and ReLU.

  Attributes:
    features: output channels.
    method: "conv_transpose" (the references: 3x3 stride-2 transposed convolution,
      Cin*Cout*9 + Cout parameters); "conv_transpose_subpixel" (the same function
      with the same parameter tree, "ConvTranspose_0/{kernel, bias}", computed
      exactly as a 2x2 convolution and depth-to-space, see `upsample`: fast
      gradient on XLA:CPU, where the transposed convolution's gradient is slow);
      or "subpixel" (a 1x1 convolution to 4*Cout channels and depth-to-space:
      exact output shape, fewer parameters, a different function).
  """

  features: int
  method: str = "conv_transpose"
  norm: str = "none"
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.method == "conv_transpose":
      x = nn.ConvTranspose(self.features, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype)(x)
    elif self.method == "conv_transpose_subpixel":
      # Named as flax auto-names the ConvTranspose above: the two param trees are interchangeable.
      x = SubpixelConvTranspose(self.features, dtype=self.dtype, conv=self.conv,
                                name="ConvTranspose_0")(x)  # [B, 2H, 2W, C]
    elif self.method == "subpixel":
      x = nn.Conv(4 * self.features, (1, 1), dtype=self.dtype,
                  conv_general_dilated=conv_impl.get(self.conv))(x)  # [B, H, W, 4C]
      x = depth_to_space(x, 2)  # [B, 2H, 2W, C]
    else:
      raise ConfigError(f"unknown upsampling {self.method!r}; use conv_transpose, "
                       "conv_transpose_subpixel or subpixel")
    return nn.relu(Norm(self.norm)(x, train))


class Encoder(nn.Module):
  """Encoder of SPEC 2: returns the latent z (1/8 resolution) and the three skips.

  The last convolution has no activation, as in both references.
  """

  width: float = 1.0
  norm: str = "none"
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """Args: x: [B, H, W, 3t] input frames stacked on channels. Returns (z, skips)."""
    c = lambda n: scaled(n, self.width)
    skip1 = ConvBlock(c(64), self.norm, dtype=self.dtype, conv=self.conv)(x, train)  # [B, H, W, 64w]
    x = nn.max_pool(skip1, (2, 2), strides=(2, 2))
    skip2 = ConvBlock(c(128), self.norm, dtype=self.dtype, conv=self.conv)(x, train)  # [B, H/2, W/2, 128w]
    x = nn.max_pool(skip2, (2, 2), strides=(2, 2))
    skip3 = ConvBlock(c(256), self.norm, dtype=self.dtype, conv=self.conv)(x, train)  # [B, H/4, W/4, 256w]
    x = nn.max_pool(skip3, (2, 2), strides=(2, 2))
    z = ConvBlock(c(512), self.norm, last_activation=False, dtype=self.dtype,
                  conv=self.conv)(x, train)  # [B, H/8, W/8, 512w]
    return z, (skip1, skip2, skip3)


class Decoder(nn.Module):
  """U-Net decoder of SPEC 2: z and skips -> full-resolution features with 128w channels.

  With ``use_skips=False`` the skip concatenations are dropped (PGM's RGB-difference
  branch); the channel counts after each upsampling then halve accordingly.
  """

  width: float = 1.0
  norm: str = "none"
  upsample: str = "conv_transpose"
  use_skips: bool = True
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, z: jax.Array, skips, train: bool = False) -> jax.Array:
    """Args: z: [B, H/8, W/8, 512w]; skips: (skip1, skip2, skip3). Returns [B, H, W, 128w] features."""
    c = lambda n: scaled(n, self.width)
    skip1, skip2, skip3 = skips
    x = ConvBlock(c(512), self.norm, dtype=self.dtype, conv=self.conv)(z, train)  # [B, H/8, W/8, 512w]
    x = Upsample(c(256), self.upsample, self.norm, dtype=self.dtype,
                 conv=self.conv)(x, train)  # [B, H/4, W/4, 256w]
    if self.use_skips:
      x = jnp.concatenate([skip3, x], axis=-1)  # [B, H/4, W/4, 512w]
    x = ConvBlock(c(256), self.norm, dtype=self.dtype, conv=self.conv)(x, train)
    x = Upsample(c(128), self.upsample, self.norm, dtype=self.dtype,
                 conv=self.conv)(x, train)  # [B, H/2, W/2, 128w]
    if self.use_skips:
      x = jnp.concatenate([skip2, x], axis=-1)  # [B, H/2, W/2, 256w]
    x = ConvBlock(c(128), self.norm, dtype=self.dtype, conv=self.conv)(x, train)
    x = Upsample(c(64), self.upsample, self.norm, dtype=self.dtype,
                 conv=self.conv)(x, train)  # [B, H, W, 64w]
    if self.use_skips:
      x = jnp.concatenate([skip1, x], axis=-1)  # [B, H, W, 128w]
    return x


class OutputHead(nn.Module):
  """Prediction head [C->64, 64->64, 64->out, tanh] (MPN and PGM references)."""

  width: float = 1.0
  out_channels: int = 3
  dtype: Dtype = jnp.float32
  conv: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x: [B, H, W, C] features. Returns [B, H, W, out_channels] in [-1, 1]."""
    c = scaled(64, self.width)
    conv = lambda n: nn.Conv(n, (3, 3), padding="SAME", dtype=self.dtype,
                             conv_general_dilated=conv_impl.get(self.conv))
    x = nn.relu(conv(c)(x))
    x = nn.relu(conv(c)(x))
    x = conv(self.out_channels)(x)
    return jnp.tanh(x.astype(jnp.float32))


def stack_frames(frames: jax.Array) -> jax.Array:
  """[B, T, H, W, C] -> [B, H, W, T*C]: frames on channels, oldest first (both references)."""
  b, t, h, w, c = frames.shape
  return frames.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)
