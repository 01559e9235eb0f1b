"""The "dwdot" convolution (filter gradient as per-tap matrix products) equals XLA's convolution.

Value, gradients, forward-over-reverse and reverse-over-reverse second derivatives agree with
`lax.conv_general_dilated` to float32 rounding (relative 1e-5 on the value, 1e-4 on derivatives); its
forward is XLA's convolution itself (inference unchanged) and its filter gradient has no convolution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvad.models import conv_impl, mpn

DIMS = ("NHWC", "HWIO", "NHWC")
CASES = [((3, 3), "SAME"), ((2, 2), ((1, 0), (1, 0))), ((1, 1), "SAME"), ((3, 3), "VALID")]


def _conv(fn, padding):
  return lambda x, k: fn(x, k, (1, 1), padding, dimension_numbers=DIMS, precision=lax.Precision.HIGHEST)


def _data(kernel):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 6, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel + (4, 5)), jnp.float32)
  return x, k


def _close(a, b, tol=1e-4):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=tol, atol=tol * float(jnp.max(jnp.abs(v))))


@pytest.mark.parametrize("kernel,padding", CASES)
def test_dwdot_matches_xla_value_gradient_and_second_order(kernel, padding):
  x, k = _data(kernel)
  ref, new = _conv(lax.conv_general_dilated, padding), _conv(conv_impl.dwdot_conv_general_dilated, padding)
  _close(new(x, k), ref(x, k), 1e-5)
  loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k))))
  _close(jax.grad(loss(new), (0, 1))(x, k), jax.grad(loss(ref), (0, 1))(x, k))
  # Forward-over-reverse (the meta step's hessian="forward") and reverse-over-reverse.
  tangent = (jnp.cos(x), jnp.sin(k))
  hvp = lambda f: jax.jvp(jax.grad(loss(f), (0, 1)), (x, k), tangent)[1]
  _close(hvp(new), hvp(ref))
  rr = lambda f: jax.grad(lambda k: jnp.sum(jax.grad(loss(f), 1)(x, k) ** 2))(k)
  _close(rr(new), rr(ref))


def test_dwdot_forward_is_xla_and_filter_gradient_has_no_convolution():
  x, k = _data((3, 3))
  new = _conv(conv_impl.dwdot_conv_general_dilated, "SAME")
  fwd = jax.jit(new).lower(x, k).compile().as_text()
  assert fwd.count(" convolution(") == 1 and " dot(" not in fwd
  grad_k = jax.jit(jax.grad(lambda x, k: jnp.sum(new(x, k) ** 2), 1)).lower(x, k).compile().as_text()
  ref_k = jax.jit(jax.grad(lambda x, k: jnp.sum(_conv(lax.conv_general_dilated, "SAME")(x, k) ** 2), 1)
                  ).lower(x, k).compile().as_text()
  assert grad_k.count(" convolution(") == 1  # The forward only; XLA's own has a second, the filter gradient.
  assert ref_k.count(" convolution(") == 2


def test_dwdot_falls_back_to_xla_for_strided_convolutions():
  x, k = _data((3, 3))
  dims = lax.conv_dimension_numbers(x.shape, k.shape, DIMS)
  got = conv_impl.dwdot_conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=dims)
  np.testing.assert_allclose(got, lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=dims),
                             rtol=1e-5, atol=1e-5)


def test_mpn_loss_and_gradients_with_auto_dwdot_equal_xla(monkeypatch):
  # Force "auto" onto the dwdot path for every layer (no im2col, any map size) on this tiny model.
  monkeypatch.setattr(conv_impl, "AUTO_MAX_PATCH_BYTES", 0)
  monkeypatch.setattr(conv_impl, "AUTO_DWDOT_MIN_POSITIONS", 1)
  window = jax.random.uniform(jax.random.PRNGKey(0), (2, 5, 16, 16, 3), minval=-1, maxval=1)
  models = {c: mpn.MPN(width=0.0625, upsample="conv_transpose_subpixel", num_prototypes=3, conv=c)
            for c in ("xla", "auto")}
  variables = models["xla"].init(jax.random.PRNGKey(1), window[:, :-1])

  def loss(model):
    def f(params):
      pred, _ = model.apply({"params": params}, window[:, :-1])
      return jnp.mean((pred - window[:, -1]) ** 2)
    return jax.value_and_grad(f)(variables["params"])

  (v_auto, g_auto), (v_xla, g_xla) = loss(models["auto"]), loss(models["xla"])
  np.testing.assert_allclose(v_auto, v_xla, rtol=1e-5)
  _close(g_auto, g_xla)
