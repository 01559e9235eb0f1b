"""Meta-learners (`meta.learner`) and adapted sets (`meta.adapted`): each meta-gradient against its definition.

The float64 checks use test_meta's tiny pure-jnp model and an independent hand computation with explicit
Hessian matrices of the flattened parameters: for T inner steps theta_{i+1} = theta_i - A g_S(theta_i)
(A = diag(alpha broadcast to theta)), J_i = I - A H_S(theta_i), and

  d L_Q(theta_T) / d theta = J_0^T ... J_{T-1}^T g_Q(theta_T)
  d L_Q(theta_T) / d alpha = sum_i -g_S(theta_i) * (J_{i+1}^T ... J_{T-1}^T g_Q(theta_T))   (reduced per tensor)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxvad import config_lib, models, run_record
from jaxvad.errors import ConfigError
from jaxvad.meta import core, learners
from jaxvad.meta import step as step_lib
from test_meta import toy_problem, toy_task_loss

SECOND_ORDER = ("meta_sgd", "per_tensor", "maml")


def _alpha_for(name, theta, alpha_pp):
  """A learner's alpha on the toy problem: test_meta's random per-parameter alpha, per-tensor means, or 0.12."""
  if name == "meta_sgd":
    return alpha_pp
  if name == "per_tensor":
    return jax.tree.map(lambda a: jnp.mean(a), alpha_pp)
  return jnp.asarray(0.12, jnp.float64)


def _hand_meta_grad(theta, alpha, frozen, episodes, num_steps, first_order=False):
  """(mean L_Q, d/dtheta, d/dalpha broadcast to theta's shape) by explicit matrices (module docstring)."""
  flat0, unravel = ravel_pytree(theta)
  a_vec = ravel_pytree(jax.tree.map(lambda a, p: jnp.broadcast_to(a, p.shape), core.expand_alpha(alpha, theta),
                                    theta))[0]  # [P]
  losses, g_th, g_al = [], [], []
  for e in range(episodes["support"].shape[0]):
    sup, qry = episodes["support"][e], episodes["query"][e]
    ls = lambda v, s=sup: toy_task_loss(unravel(v), frozen, s)
    lq = lambda v, q=qry: toy_task_loss(unravel(v), frozen, q)
    points, grads_s = [flat0], []
    for _ in range(num_steps):
      g = jax.grad(ls)(points[-1])
      grads_s.append(g)
      points.append(points[-1] - a_vec * g)
    losses.append(lq(points[-1]))
    v = jax.grad(lq)(points[-1])  # g_Q(theta_T)
    d_alpha = jnp.zeros_like(flat0)
    for i in reversed(range(num_steps)):
      d_alpha = d_alpha - grads_s[i] * v
      if not first_order:
        h = jax.hessian(ls)(points[i])  # [P, P] explicit, symmetric.
        v = v - h @ (a_vec * v)  # J_i^T v = (I - H A) v
    g_th.append(v)
    g_al.append(d_alpha)
  return np.mean(losses), unravel(np.mean(g_th, 0)), unravel(np.mean(g_al, 0))


def _reduce(g_full, alpha):
  return core.reduce_to_alpha(g_full, alpha)


def _assert_tree_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)


@pytest.mark.parametrize("hessian", ["forward", "reverse"])
@pytest.mark.parametrize("num_steps", [1, 2])
@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_order_meta_gradient_equals_hand_computation_float64(name, num_steps, hessian):
  with jax.enable_x64(True):
    theta, alpha_pp, frozen, episodes = toy_problem(jnp.float64, num_episodes=2)
    alpha = _alpha_for(name, theta, alpha_pp)
    spec = learners.get(name)
    value, (g_theta, g_alpha) = learners.meta_value_and_grad(spec, toy_task_loss, theta, alpha, frozen, episodes,
                                                             inner_steps=num_steps, hessian=hessian)
    want_value, want_theta, want_alpha_full = _hand_meta_grad(theta, alpha, frozen, episodes, num_steps)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    _assert_tree_close(g_theta, want_theta, rtol=1e-9, atol=1e-12)
    if spec.learns_alpha:
      _assert_tree_close(g_alpha, _reduce(want_alpha_full, alpha), rtol=1e-9, atol=1e-12)
      assert jax.tree.structure(g_alpha) == jax.tree.structure(alpha)
      assert max(float(np.max(np.abs(g))) for g in jax.tree.leaves(g_alpha)) > 1e-4
    else:  # maml: the step size is not learned.
      assert float(np.max(np.abs(g_alpha))) == 0.0
    # And jax.grad of the outer loss through the inner steps (the definition) gives the same.
    auto = jax.grad(lambda th: core.meta_loss(toy_task_loss, th, alpha, frozen, episodes, num_steps=num_steps))(theta)
    _assert_tree_close(g_theta, auto, rtol=1e-9, atol=1e-12)


def _sgd(theta, frozen, batch, a, num_steps):
  """Plain SGD on the toy task, written out (the independent reference for fomaml and reptile)."""
  for _ in range(num_steps):
    g = jax.grad(toy_task_loss)(theta, frozen, batch)
    theta = jax.tree.map(lambda p, gg: p - a * gg, theta, g)
  return theta


@pytest.mark.parametrize("num_steps", [1, 3])
def test_fomaml_is_the_query_gradient_at_the_adapted_point_float64(num_steps):
  with jax.enable_x64(True):
    theta, alpha_pp, frozen, episodes = toy_problem(jnp.float64, num_episodes=2)
    a = 0.12
    _, (g_theta, g_alpha) = learners.meta_value_and_grad(learners.get("fomaml"), toy_task_loss, theta,
                                                         jnp.asarray(a), frozen, episodes, inner_steps=num_steps)
    want = []
    for e in range(2):
      th = _sgd(theta, frozen, episodes["support"][e], a, num_steps)
      want.append(jax.grad(toy_task_loss)(th, frozen, episodes["query"][e]))
    _assert_tree_close(g_theta, jax.tree.map(lambda x, y: (x + y) / 2, *want), rtol=1e-10, atol=1e-13)
    assert float(g_alpha) == 0.0
    # Second order (maml) differs from it by exactly the Hessian term (T = 1: -a H_S g_Q).
    _, (g_maml, _) = learners.meta_value_and_grad(learners.get("maml"), toy_task_loss, theta, jnp.asarray(a),
                                                  frozen, episodes, inner_steps=num_steps)
    diff = ravel_pytree(g_maml)[0] - ravel_pytree(g_theta)[0]
    assert float(jnp.max(jnp.abs(diff))) > 1e-3 * float(jnp.max(jnp.abs(ravel_pytree(g_theta)[0])))
    if num_steps == 1:
      _, want_so, _ = _hand_meta_grad(theta, jnp.asarray(a), frozen, episodes, 1)
      _, want_fo, _ = _hand_meta_grad(theta, jnp.asarray(a), frozen, episodes, 1, first_order=True)
      np.testing.assert_allclose(diff, ravel_pytree(want_so)[0] - ravel_pytree(want_fo)[0], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_reptile_pseudo_gradient_is_theta_minus_sgd_iterate_float64(num_steps):
  with jax.enable_x64(True):
    theta, _, frozen, episodes = toy_problem(jnp.float64, num_episodes=2)
    a = 0.12
    value, (g_theta, g_alpha) = learners.meta_value_and_grad(learners.get("reptile"), toy_task_loss, theta,
                                                             jnp.asarray(a), frozen, episodes, inner_steps=num_steps)
    want = []
    for e in range(2):
      batch = np.concatenate([episodes["support"][e], episodes["query"][e]])  # Support + query together.
      th = _sgd(theta, frozen, batch, a, num_steps)
      want.append(jax.tree.map(lambda p, q: p - q, theta, th))  # theta - theta_T
    _assert_tree_close(g_theta, jax.tree.map(lambda x, y: (x + y) / 2, *want), rtol=1e-10, atol=1e-13)
    assert float(g_alpha) == 0.0
    # Monitored value: the query loss after test-time adaptation on the support (not in the update).
    np.testing.assert_allclose(value, core.meta_loss(toy_task_loss, theta, jnp.asarray(a), frozen, episodes,
                                                     num_steps=num_steps), rtol=1e-12)
    # No query gradient at the adapted point: not FOMAML's direction (nor a multiple of it).
    _, (g_fo, _) = learners.meta_value_and_grad(learners.get("fomaml"), toy_task_loss, theta, jnp.asarray(a),
                                                frozen, episodes, inner_steps=num_steps)
    r, f = ravel_pytree(g_theta)[0], ravel_pytree(g_fo)[0]
    assert abs(float(r @ f) / float(jnp.linalg.norm(r) * jnp.linalg.norm(f))) < 0.999
    if num_steps == 1:  # One step: alpha times the joint support + query gradient at theta.
      joint = [jax.grad(toy_task_loss)(theta, frozen, np.concatenate([episodes["support"][e], episodes["query"][e]]))
               for e in range(2)]
      _assert_tree_close(g_theta, jax.tree.map(lambda x, y: a * (x + y) / 2, *joint), rtol=1e-10, atol=1e-13)


def test_first_order_flag_gives_first_order_meta_sgd_float64():
  with jax.enable_x64(True):
    theta, alpha, frozen, episodes = toy_problem(jnp.float64, num_episodes=2)
    _, (g_theta, g_alpha) = learners.meta_value_and_grad(learners.get("meta_sgd", first_order=True), toy_task_loss,
                                                         theta, alpha, frozen, episodes)
    _, want_theta, want_alpha = _hand_meta_grad(theta, alpha, frozen, episodes, 1, first_order=True)
    _assert_tree_close(g_theta, want_theta, rtol=1e-9, atol=1e-12)
    _assert_tree_close(g_alpha, want_alpha, rtol=1e-9, atol=1e-12)


def test_meta_steps_fixed_and_learned_step_sizes():
  """maml / fomaml / reptile keep alpha bit-identical; meta_sgd and per_tensor learn it (per-tensor: scalars)."""
  with jax.enable_x64(True):
    theta, _, frozen, episodes = toy_problem(jnp.float64, num_episodes=2)
    tx = step_lib.make_meta_optimizer(1e-2)
    for name in learners.LEARNERS:
      spec = learners.get(name)
      alpha = learners.init_alpha(spec, theta, 0.1)
      if name == "per_tensor":
        assert all(a.shape == () for a in jax.tree.leaves(alpha))
        assert jax.tree.structure(alpha) == jax.tree.structure(theta)
      elif name == "meta_sgd":
        assert jax.tree.map(jnp.shape, alpha) == jax.tree.map(jnp.shape, theta)
      else:
        assert jnp.shape(alpha) == ()
      fn = jax.jit(step_lib.make_meta_step(toy_task_loss, tx, inner_steps=2, learner=name))
      state = step_lib.init_meta_state(theta, alpha, tx)
      for _ in range(3):
        state, metrics = fn(state, frozen, episodes)
        assert int(metrics["nonfinite"]) == 0
      moved = ravel_pytree(state.theta)[0] - ravel_pytree(theta)[0]
      assert float(jnp.min(jnp.abs(moved))) > 0, name  # Every parameter of theta moved.
      alpha_moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(state.alpha),
                                                                      jax.tree.leaves(alpha))]
      if spec.learns_alpha:
        assert min(alpha_moved) > 0, name
        assert jax.tree.map(jnp.shape, state.alpha) == jax.tree.map(jnp.shape, alpha)
      else:
        assert max(alpha_moved) == 0.0 and float(metrics["alpha_grad_norm"]) == 0.0, name


def test_adapt_accepts_every_alpha_kind():
  """Test-time ``core.adapt(theta, alpha, support)``: one scalar, per-tensor scalars and a full pytree agree."""
  with jax.enable_x64(True):
    theta, _, frozen, episodes = toy_problem(jnp.float64)
    support = episodes["support"][0]
    full = core.adapt(toy_task_loss, theta, core.init_alpha(theta, 0.05), frozen, support, num_steps=2)
    for spec in (learners.get("maml"), learners.get("per_tensor")):
      got = core.adapt(toy_task_loss, theta, learners.init_alpha(spec, theta, 0.05), frozen, support, num_steps=2)
      _assert_tree_close(got, full, rtol=1e-14)


def test_unknown_learner_and_adapted_set_are_config_errors():
  with pytest.raises(ConfigError, match=r"meta.learner='sgd'.*meta_sgd.*maml.*fomaml.*per_tensor.*reptile"):
    learners.get("sgd")
  with pytest.raises(ConfigError, match=r"meta.adapted='head'.*dpu.*dpu_head.*dpu_head_decoder.*all"):
    core.split_params({"dpu": {}, "head": {}}, "head")


def test_meta_config_defaults_and_old_records_agree():
  mc = config_lib.load_config("configs/meta.py:synthetic").meta
  assert (mc.learner, mc.adapted, mc.remat) == ("meta_sgd", "dpu_head", False)
  c = config_lib.load_config("configs/meta.py:synthetic")
  old = c.copy_and_resolve_references()
  with old.unlocked():
    for k in ("learner", "adapted", "remat"):
      del old.meta[k]
  assert run_record.diff(old, c) == []  # A record made before these fields: the same run.
  changed = c.copy_and_resolve_references()
  changed.meta.adapted = "all"
  assert [k for k, _, _ in run_record.diff(old, changed)] == ["meta.adapted"]


# ---------------------------------------------------------------------------------------------------------
# meta.adapted on the MPN (16x16, width 0.0625, M = 3).


@pytest.fixture(scope="module")
def mpn():
  c = config_lib.load_config("configs/mpn.py:quick").model
  c.update(width=0.0625, num_prototypes=3)
  mdef = models.build(c)
  params = jax.jit(mdef.module.init)(jax.random.key(0, impl="unsafe_rbg"), jnp.zeros((1, 2, 16, 16, 3)))["params"]
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, c)
  rng = np.random.default_rng(1)
  episodes = {"support": rng.uniform(-1, 1, (1, 2, 3, 16, 16, 3)).astype(np.float32),  # [E, K, T+1, H, W, 3]
              "query": rng.uniform(-1, 1, (1, 1, 3, 16, 16, 3)).astype(np.float32)}  # [E, Q, T+1, H, W, 3]
  return task_loss, jax.device_get(params), episodes


def test_mpn_parameter_tree_has_the_four_parts(mpn):
  _, params, _ = mpn
  assert set(params) == {"encoder", "decoder", "dpu", "head"}
  for name, keys in core.ADAPTED_SETS.items():
    theta, frozen = core.split_params(params, name)
    assert set(theta) == set(keys) and set(theta) | set(frozen) == set(params) and not set(theta) & set(frozen)


@pytest.mark.parametrize("adapted", list(core.ADAPTED_SETS))
def test_meta_steps_change_exactly_the_adapted_parameters(mpn, adapted):
  task_loss, params, episodes = mpn
  theta, frozen = core.split_params(params, adapted)
  tx = step_lib.make_meta_optimizer(1e-3)
  fn = jax.jit(step_lib.make_meta_step(task_loss, tx, learner="fomaml"))  # First order: fast to compile.
  state = step_lib.init_meta_state(theta, learners.init_alpha(learners.get("fomaml"), theta, 1e-2), tx)
  for _ in range(2):
    state, _ = fn(state, frozen, episodes)
  after = jax.device_get(core.merge_params(state.theta, frozen))
  for part in params:
    leaves = zip(jax.tree.leaves(params[part]), jax.tree.leaves(after[part]))
    changed = [bool(np.any(np.asarray(a) != np.asarray(b))) for a, b in leaves]
    if part in core.ADAPTED_SETS[adapted]:
      assert all(changed), (adapted, part, changed)  # Every tensor of an adapted part moved.
    else:
      assert not any(changed), (adapted, part)  # Bit-identical.


def test_meta_train_and_load_meta_use_the_configured_set_and_learner(tmp_path):
  """meta_train and load_meta split by meta.adapted; a per-tensor alpha round-trips through the checkpoint."""
  from jaxvad.data import multisource  # pylint: disable=import-outside-toplevel
  from jaxvad.meta import train as meta_train_lib  # pylint: disable=import-outside-toplevel
  from test_fewshot import TINY  # pylint: disable=import-outside-toplevel
  config = config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"),
                                      TINY + ["meta.adapted='dpu'", "meta.learner='per_tensor'"])
  source = multisource.load(config.data, "training", progress=False)
  params = meta_train_lib.pretrain(config, tmp_path, source, progress=False)
  theta, alpha, frozen = meta_train_lib.meta_train(config, tmp_path, source, params, progress=False)
  assert set(theta) == {"dpu"} and set(frozen) == {"encoder", "decoder", "head"}
  assert all(a.shape == () for a in jax.tree.leaves(alpha)) and float(jax.tree.leaves(alpha)[0]) != 1e-2
  jax.tree.map(np.testing.assert_array_equal, frozen["head"], params["head"])  # Frozen: bit-identical.
  loaded = meta_train_lib.load_meta(config, tmp_path)
  jax.tree.map(np.testing.assert_array_equal, loaded, (theta, alpha, frozen))
