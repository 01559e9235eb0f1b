"""The sub-pixel form of the 3x3 stride-2 transposed convolution equals the reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import backbone
from jaxvad.models import upsample

ATOL = 1e-5


def _inputs(shape, cout, seed=0):
  """Random x [B, H, W, Cin], kernel [3, 3, Cin, Cout] and bias [Cout]."""
  kx, kk, kb = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, shape)
  kernel = jax.random.normal(kk, (3, 3, shape[-1], cout))
  bias = jax.random.normal(kb, (cout,))
  return x, kernel, bias


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 4, 4, 2), (1, 1, 1, 3), (1, 3, 2, 1)])
def test_forward_matches_lax_and_flax(shape):
  x, kernel, bias = _inputs(shape, 4)
  flax_mod = nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding="SAME")
  y_flax = flax_mod.apply({"params": {"kernel": kernel, "bias": bias}}, x)
  y_lax = upsample.conv_transpose_3x3_s2(x, kernel, bias)
  y_sub = upsample.subpixel_conv_transpose_3x3_s2(x, kernel, bias)
  assert y_sub.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
  np.testing.assert_allclose(y_lax, y_flax, atol=ATOL)
  np.testing.assert_allclose(y_sub, y_lax, atol=ATOL)


def test_index_mapping_of_single_taps():
  """Each tap alone reproduces the derived phase/offset rule (1D rule in both axes)."""
  x = jax.random.normal(jax.random.key(1), (1, 3, 4, 1))
  for r in range(3):
    for c in range(3):
      kernel = jnp.zeros((3, 3, 1, 1)).at[r, c].set(1.0)
      y = np.asarray(upsample.subpixel_conv_transpose_3x3_s2(x, kernel))[0, :, :, 0]  # [6, 8]
      ref = np.asarray(upsample.conv_transpose_3x3_s2(x, kernel))[0, :, :, 0]
      np.testing.assert_allclose(y, ref, atol=ATOL)
      # Tap k of an axis feeds phase k % 2 from input offset -1 if k == 0 else 0.
      expect = np.zeros((6, 8))
      xs = np.pad(np.asarray(x)[0, :, :, 0], ((1, 0), (1, 0)))  # xs[i + 1] = x[i], xs[0] = 0
      dr, dc = (0 if r == 0 else 1), (0 if c == 0 else 1)
      expect[r % 2::2, c % 2::2] = xs[dr:dr + 3, dc:dc + 4]
      np.testing.assert_allclose(y, expect, atol=ATOL)


def test_no_bias():
  x, kernel, _ = _inputs((1, 3, 3, 2), 3, seed=2)
  np.testing.assert_allclose(upsample.subpixel_conv_transpose_3x3_s2(x, kernel),
                             upsample.conv_transpose_3x3_s2(x, kernel), atol=ATOL)


def test_gradients_match():
  x, kernel, bias = _inputs((2, 5, 7, 3), 4, seed=3)
  w = jax.random.normal(jax.random.key(4), (2, 10, 14, 4))  # a random cotangent

  def loss(fn):
    return lambda x, k, b: jnp.sum(w * jnp.tanh(fn(x, k, b)))

  g_ref = jax.grad(loss(upsample.conv_transpose_3x3_s2), argnums=(0, 1, 2))(x, kernel, bias)
  g_sub = jax.grad(loss(upsample.subpixel_conv_transpose_3x3_s2), argnums=(0, 1, 2))(x, kernel, bias)
  for name, a, b in zip(("x", "kernel", "bias"), g_sub, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5, err_msg=name)


def test_depth_to_space_reexported():
  assert backbone.depth_to_space is upsample.depth_to_space
  x = jnp.arange(16.0).reshape(1, 1, 1, 16)  # channels (a, b, C=4)
  y = upsample.depth_to_space(x, 2)  # [1, 2, 2, 4]
  np.testing.assert_array_equal(y[0, 1, 0], np.arange(8.0, 12.0))  # (a=1, b=0)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_upsample_module_interchangeable(norm):
  x = jax.random.normal(jax.random.key(5), (2, 5, 7, 3))
  ref = backbone.Upsample(4, "conv_transpose", norm)
  sub = backbone.Upsample(4, "conv_transpose_subpixel", norm)
  v_ref = ref.init(jax.random.key(6), x)
  v_sub = sub.init(jax.random.key(6), x)
  # Identical tree structure and shapes, and even identical initial values (same names, same inits).
  assert jax.tree.structure(v_ref) == jax.tree.structure(v_sub)
  assert set(v_ref["params"]) >= {"ConvTranspose_0"}
  jax.tree.map(np.testing.assert_array_equal, v_ref, v_sub)
  # Same outputs with the same (perturbed, nonzero-bias) params, either direction.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(7), p.shape), v_ref["params"])
  variables = {**v_ref, "params": params}
  y_ref = ref.apply(variables, x)
  y_sub = sub.apply(variables, x)
  assert y_ref.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(y_sub, y_ref, atol=ATOL)


def test_parameter_count():
  cin, cout = 6, 5
  variables = backbone.Upsample(cout, "conv_transpose_subpixel").init(
      jax.random.key(0), jnp.zeros((1, 2, 2, cin)))
  kernel = variables["params"]["ConvTranspose_0"]["kernel"]
  assert kernel.shape == (3, 3, cin, cout)
  n = sum(p.size for p in jax.tree.leaves(variables["params"]))
  assert n == cin * cout * 9 + cout


def test_unknown_method_raises():
  with pytest.raises(ValueError, match="conv_transpose_subpixel"):
    backbone.Upsample(4, "bilinear").init(jax.random.key(0), jnp.zeros((1, 2, 2, 3)))
