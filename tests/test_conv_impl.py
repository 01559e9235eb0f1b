"""The im2col convolution equals XLA's (value and gradients), and models give the same outputs with either."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvad.models import conv_impl, mpn

DIMS = ("NHWC", "HWIO", "NHWC")


def _xla(x, k, padding, strides=(1, 1)):
  return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS,
                                  precision=lax.Precision.HIGHEST)


def _im2col(x, k, padding, strides=(1, 1)):
  dims = lax.conv_dimension_numbers(x.shape, k.shape, DIMS)
  return conv_impl.im2col_conv_general_dilated(x, k, strides, padding, dimension_numbers=dims,
                                               precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize("kernel,padding", [
    ((3, 3), "SAME"),               # The backbone's convolutions.
    ((1, 1), "SAME"),               # 1x1 (subpixel upsampling, DPU attention).
    ((2, 2), ((1, 0), (1, 0))),     # The sub-pixel transposed convolution.
    ((3, 3), "VALID"),
])
def test_im2col_matches_xla_in_value_and_gradient(kernel, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 5, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel + (4, 3)), jnp.float32)
  np.testing.assert_allclose(_im2col(x, k, padding), _xla(x, k, padding), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k, padding))))
  g_ref = jax.grad(loss(_xla), argnums=(0, 1))(x, k)
  g_new = jax.grad(loss(_im2col), argnums=(0, 1))(x, k)
  for a, b in zip(g_new, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_unsupported_convolutions_fall_back_to_xla():
  x = jnp.ones((1, 6, 6, 2))
  k = jnp.ones((3, 3, 2, 2))
  np.testing.assert_allclose(_im2col(x, k, "SAME", strides=(2, 2)), _xla(x, k, "SAME", strides=(2, 2)))


def test_get_rejects_unknown_names():
  assert conv_impl.get("xla") is lax.conv_general_dilated
  with pytest.raises(ValueError, match="model.conv"):
    conv_impl.get("winograd")


@pytest.mark.parametrize("upsample", ["conv_transpose_subpixel", "subpixel"])
def test_mpn_outputs_do_not_depend_on_the_convolution_implementation(upsample):
  window = jax.random.uniform(jax.random.PRNGKey(0), (1, 4, 16, 16, 3), minval=-1, maxval=1)
  models = {c: mpn.MPN(width=0.0625, upsample=upsample, num_prototypes=3, conv=c) for c in ("xla", "im2col")}
  variables = models["xla"].init(jax.random.PRNGKey(1), window)
  assert jax.tree.structure(models["im2col"].init(jax.random.PRNGKey(1), window)) == jax.tree.structure(variables)
  preds = {c: m.apply(variables, window)[0] for c, m in models.items()}
  np.testing.assert_allclose(preds["im2col"], preds["xla"], rtol=1e-4, atol=1e-5)
