"""Meta-SGD (MPN's MPU, paper Eq. 9-11): exact meta-gradients, frozen AE, batching, adaptation, meta step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from conftest import run_on_cpu_devices
from jaxvad import config_lib
from jaxvad import models
from jaxvad.meta import core
from jaxvad.meta import step as step_lib
from jaxvad.train import mesh as mesh_lib

T = 2  # Input frames per window.


# ---------------------------------------------------------------------------------------------------------
# A tiny pure-jnp model for exact (float64) checks: windows [K, T+1, D], frozen "encoder", theta dpu + head.


def toy_task_loss(theta, frozen, windows):
  k = windows.shape[0]
  x = windows[:, :-1].reshape(k, -1)  # [K, T*D]
  y = windows[:, -1]  # [K, D]
  h = jnp.tanh(x @ jax.lax.stop_gradient(frozen["encoder"]["w"]))  # [K, H]
  h = jnp.tanh(h @ theta["dpu"]["w"])  # [K, H]
  pred = h @ theta["head"]["w"] + theta["head"]["b"]  # [K, D]
  return jnp.mean((pred - y) ** 2)


def toy_problem(dtype, num_episodes=2, k=2, q=2, d=3, hidden=4):
  keys = jax.random.split(jax.random.PRNGKey(0), 6)
  theta = {"dpu": {"w": jax.random.normal(keys[0], (hidden, hidden), dtype)},
           "head": {"w": jax.random.normal(keys[1], (hidden, d), dtype), "b": jnp.zeros((d,), dtype)}}
  frozen = {"encoder": {"w": jax.random.normal(keys[2], (T * d, hidden), dtype)}}
  alpha = jax.tree.map(lambda p, r: 0.1 + 0.05 * jax.random.uniform(r, p.shape, dtype), theta,
                       {"dpu": {"w": keys[3]}, "head": {"w": keys[4], "b": keys[5]}})
  ek = jax.random.split(jax.random.PRNGKey(1), 2)
  episodes = {"support": jax.random.normal(ek[0], (num_episodes, k, T + 1, d), dtype),
              "query": jax.random.normal(ek[1], (num_episodes, q, T + 1, d), dtype)}
  return theta, alpha, frozen, episodes


def test_meta_gradient_matches_finite_differences_float64():
  with jax.enable_x64(True):
    theta, alpha, frozen, episodes = toy_problem(jnp.float64)
    flat, unravel = ravel_pytree((theta, alpha))  # [2P]
    assert flat.dtype == jnp.float64

    @jax.jit
    def f(v):
      th, al = unravel(v)
      return core.meta_loss(toy_task_loss, th, al, frozen, episodes, batching="vmap")

    grad = jax.grad(f)(flat)
    eps = 1e-6
    basis = jnp.eye(flat.size, dtype=jnp.float64)
    fd = jax.vmap(lambda e: (f(flat + eps * e) - f(flat - eps * e)) / (2 * eps))(basis)
    n = flat.size // 2
    np.testing.assert_allclose(grad[:n], fd[:n], rtol=1e-6, atol=1e-9)  # theta
    np.testing.assert_allclose(grad[n:], fd[n:], rtol=1e-6, atol=1e-9)  # alpha
    assert np.abs(np.asarray(grad[n:])).max() > 1e-3

    # First order drops the Hessian term: a different (approximate) gradient.
    first = jax.grad(lambda v: core.meta_loss(toy_task_loss, *unravel(v), frozen, episodes,
                                              first_order=True))(flat)
    assert not np.allclose(first, grad, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(first, grad, rtol=0.5, atol=0.5)  # but close: same first-order term
  assert jnp.zeros(()).dtype == jnp.float32  # x64 is off again for the other tests


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batching", ["unroll", "vmap", "map"])
def test_closed_form_meta_gradient_equals_autodiff_float64(batching, first_order):
  """`core.meta_value_and_grad` (forward-over-reverse HVP) is jax.grad of the meta loss, to float64 rounding."""
  with jax.enable_x64(True):
    theta, alpha, frozen, episodes = toy_problem(jnp.float64, num_episodes=3)
    value, grads = core.meta_value_and_grad(toy_task_loss, theta, alpha, frozen, episodes, batching=batching,
                                            first_order=first_order)
    ref_value, ref_grads = jax.value_and_grad(
        lambda th, al: core.meta_loss(toy_task_loss, th, al, frozen, episodes, first_order=first_order),
        argnums=(0, 1))(theta, alpha)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), grads, ref_grads)


def test_toy_adapt_matches_numpy_reference():
  theta, alpha, frozen, episodes = toy_problem(jnp.float32)
  support = episodes["support"][0]
  grads = jax.grad(toy_task_loss)(theta, frozen, support)
  want = jax.tree.map(lambda p, a, g: np.asarray(p) - np.asarray(a) * np.asarray(g), theta, alpha, grads)
  got = core.adapt(toy_task_loss, theta, alpha, frozen, support)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6), got, want)


# ---------------------------------------------------------------------------------------------------------
# MPN at 16x16, width 0.0625, M = 3.


@pytest.fixture(scope="module")
def mpn():
  c = config_lib.load_config("configs/mpn.py:quick").model
  c.update(width=0.0625, num_prototypes=3)
  mdef = models.build(c)
  # rbg keys: the threefry initialisers take ~15 s to compile on a 2-core CPU, rbg ~4 s.
  key = jax.random.key(0, impl="unsafe_rbg")
  params = jax.jit(mdef.module.init)(key, jnp.zeros((1, T, 16, 16, 3)))["params"]
  theta, frozen = core.split_params(params)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, c)
  rng = np.random.default_rng(1)
  episodes = {"support": rng.uniform(-1, 1, (2, 1, T + 1, 16, 16, 3)).astype(np.float32),  # [E, K, T+1, H, W, 3]
              "query": rng.uniform(-1, 1, (2, 1, T + 1, 16, 16, 3)).astype(np.float32)}  # [E, Q, T+1, H, W, 3]
  episodes = jax.tree.map(jnp.asarray, episodes)
  return task_loss, theta, frozen, episodes


@functools.lru_cache(maxsize=None)
def _meta_grad_fn(task_loss, batching, first_order):
  """jit(value_and_grad) of the meta loss w.r.t. (theta, alpha, frozen)."""
  def f(theta, alpha, frozen, episodes):
    return core.meta_loss(task_loss, theta, alpha, frozen, episodes, batching=batching, first_order=first_order)
  return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))


def test_split_merge_roundtrip(mpn):
  _, theta, frozen, _ = mpn
  assert set(theta) == {"dpu", "head"} and set(frozen) == {"encoder", "decoder"}
  merged = core.merge_params(theta, frozen)
  assert set(merged) == {"encoder", "decoder", "dpu", "head"}
  alpha = core.init_alpha(theta)
  assert jax.tree.structure(alpha) == jax.tree.structure(theta)
  assert all(np.all(np.asarray(a) == np.float32(1e-6)) for a in jax.tree.leaves(alpha))
  with pytest.raises(ValueError, match="adapted parts"):
    core.split_params(frozen)


def test_vmap_map_unroll_agree_and_gradients(mpn):
  task_loss, theta, frozen, episodes = mpn
  alpha = core.init_alpha(theta, 1e-2)
  v_val, v_grads = _meta_grad_fn(task_loss, "vmap", False)(theta, alpha, frozen, episodes)
  u_val, u_grads = _meta_grad_fn(task_loss, "unroll", False)(theta, alpha, frozen, episodes)
  m_val, m_grads = _meta_grad_fn(task_loss, "map", False)(theta, alpha, frozen, episodes)
  np.testing.assert_allclose(v_val, u_val, rtol=1e-5)
  np.testing.assert_allclose(m_val, u_val, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), v_grads, u_grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), m_grads, u_grads)
  g_theta, g_alpha, g_frozen = v_grads
  assert float(optax.global_norm(g_alpha)) > 0  # alpha is learned
  assert float(optax.global_norm(g_theta)) > 0
  assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(g_frozen))  # the AE is never differentiated
  _, f_grads = _meta_grad_fn(task_loss, "vmap", True)(theta, alpha, frozen, episodes)
  assert not np.allclose(ravel_pytree(f_grads[0])[0], ravel_pytree(g_theta)[0], rtol=1e-4, atol=1e-7)


def test_closed_form_meta_gradient_equals_autodiff_on_mpn(mpn):
  task_loss, theta, frozen, episodes = mpn
  alpha = core.init_alpha(theta, 1e-2)
  ref_val, (ref_theta, ref_alpha, _) = _meta_grad_fn(task_loss, "unroll", False)(theta, alpha, frozen, episodes)
  val, (g_theta, g_alpha) = jax.jit(lambda th, al, fr, ep: core.meta_value_and_grad(task_loss, th, al, fr, ep))(
      theta, alpha, frozen, episodes)
  np.testing.assert_allclose(val, ref_val, rtol=1e-5)
  for got, want in ((g_theta, ref_theta), (g_alpha, ref_alpha)):
    got, want = ravel_pytree(got)[0], ravel_pytree(want)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(want))))


def test_adapt_k0_and_two_steps(mpn):
  task_loss, theta, frozen, episodes = mpn
  alpha = core.init_alpha(theta, 1e-2)
  empty = episodes["support"][0, :0]  # [0, T+1, H, W, 3]
  same = core.adapt(task_loss, theta, alpha, frozen, empty, num_steps=3)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), same, theta)
  support = episodes["support"][0]  # [K, T+1, H, W, 3]
  two = jax.jit(lambda th: core.adapt(task_loss, th, alpha, frozen, support, num_steps=2))(theta)
  one = jax.jit(lambda th: core.inner_update(task_loss, th, alpha, frozen, support))
  manual = one(one(theta))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), two, manual)
  assert not np.allclose(ravel_pytree(two)[0], ravel_pytree(theta)[0])


def test_finetune_identity(mpn):
  task_loss, theta, frozen, episodes = mpn
  support = episodes["support"][0]
  for out in (core.finetune(task_loss, theta, frozen, support, lr=0.0, num_steps=2),
              core.finetune(task_loss, theta, frozen, support, lr=1e-2, num_steps=0)):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), out, theta)

  @jax.jit
  def run(lr):  # lr traced: the arithmetic path, theta - 0 * grad
    moved = core.finetune(task_loss, theta, frozen, support, lr=lr, num_steps=1)
    return moved, task_loss(moved, frozen, support)

  zero, _ = run(jnp.float32(0.0))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), zero, theta)
  _, after = run(jnp.float32(1e-2))
  assert float(after) < float(task_loss(theta, frozen, support))


def test_meta_steps_jit_once_reduce_loss_and_keep_frozen(mpn):
  task_loss, theta, frozen, episodes = mpn
  frozen_before = jax.tree.map(np.array, frozen)
  tx = step_lib.make_meta_optimizer(1e-3)
  meta_step = step_lib.make_meta_step(task_loss, tx, inner_steps=1, first_order=False, batching="unroll")
  mesh = mesh_lib.make_mesh(1)
  fn = step_lib.jit_meta_step(meta_step, mesh)
  eps = mesh_lib.shard_batch(episodes, mesh)
  alpha = core.init_alpha(theta, 1e-2)

  # On a 1-device mesh the sharded step equals the plain jitted one.
  plain_state, plain_metrics = jax.jit(meta_step)(step_lib.init_meta_state(theta, alpha, tx), frozen, episodes)

  # Placed as the step returns it (replicated), so the first call compiles the same program as the rest.
  state = jax.device_put(step_lib.init_meta_state(theta, alpha, tx), mesh_lib.replicated(mesh))
  losses = []
  for i in range(6):
    state, metrics = fn(state, frozen, eps)
    if i == 0:
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8),
                   (state.theta, state.alpha), (plain_state.theta, plain_state.alpha))
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), metrics, plain_metrics)
      assert float(metrics["alpha_grad_norm"]) > 0
    losses.append(float(metrics["meta_loss"]))
    assert int(metrics["nonfinite"]) == 0
  assert fn._cache_size() == 1  # no recompilation after the first step
  assert int(state.step) == 6
  assert losses[-1] < losses[0]
  assert float(metrics["meta_loss"]) < float(metrics["query_loss_before"])  # adaptation helps
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), frozen, frozen_before)


MULTI_DEVICE_META = r"""
import jax, jax.numpy as jnp, numpy as np
from jaxvad import config_lib, models
from jaxvad.meta import core, step as step_lib
from jaxvad.train import mesh as mesh_lib
assert jax.device_count() == 4, jax.devices()
c = config_lib.load_config("configs/mpn.py:quick").model
c.update(width=0.0625, num_prototypes=3)
mdef = models.build(c)
params = jax.jit(mdef.module.init)(jax.random.key(0, impl="unsafe_rbg"), jnp.zeros((1, 2, 16, 16, 3)))["params"]
theta, frozen = core.split_params(params)
task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, c)
rng = np.random.default_rng(1)
episodes = {"support": rng.uniform(-1, 1, (4, 2, 3, 16, 16, 3)).astype(np.float32),
            "query": rng.uniform(-1, 1, (4, 1, 3, 16, 16, 3)).astype(np.float32)}
tx = step_lib.make_meta_optimizer(1e-3)
out = {}
for n in (1, 4):
  mesh = mesh_lib.make_mesh(n)
  fn = step_lib.jit_meta_step(step_lib.make_meta_step(task_loss, tx, batching="unroll"), mesh)
  state = jax.device_put(step_lib.init_meta_state(theta, core.init_alpha(theta, 1e-2), tx), mesh_lib.replicated(mesh))
  for _ in range(2):
    state, metrics = fn(state, jax.device_put(frozen, mesh_lib.replicated(mesh)), mesh_lib.shard_batch(episodes, mesh))
  out[n] = (float(metrics["meta_loss"]), jax.device_get((state.theta, state.alpha)))
assert abs(out[1][0] - out[4][0]) < 1e-5, (out[1][0], out[4][0])
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(out[1][1]), jax.tree.leaves(out[4][1])))
assert diff < 1e-5, diff
print("max diff", diff)
"""


def test_episodes_sharded_over_four_devices_match_one_device():
  """A meta-batch of 4 episodes sharded over 4 simulated CPU devices gives the 1-device step (to 1e-5)."""
  assert "max diff" in run_on_cpu_devices(MULTI_DEVICE_META, 4, timeout=600)
