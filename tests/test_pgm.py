"""PGM model: shapes and switches, the skip-free difference branch, losses, memory in training, devices."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import run_on_cpu_devices
from jaxvad import config_lib
from jaxvad import models
from jaxvad.models import backbone, memory, pgm
from jaxvad.train import state as state_lib
from jaxvad.train import step as step_lib
from test_models import numpy_output_head

WIDTH = 0.0625
LOSS_CONFIG = ml_collections.ConfigDict(dict(lambda_pred=1.0, lambda_diff=0.1, lambda_dis=1.0, use_dis=True))


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def _window(seed=0, size=16, b=2):
  return jax.random.uniform(jax.random.PRNGKey(seed), (b, 5, size, size, 3), minval=-1, maxval=1)


def _init(model, x, seed=0):
  """Variables with flax's structure, drawn by NumPy (LeCun-normal kernels, unit-norm memory items).

  Far faster than compiling `model.init` on a loaded 2-core CPU.
  """
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if "items" in name:
      return memory.l2_normalize(jnp.asarray(rng.normal(size=s.shape), s.dtype))
    if len(s.shape) == 1 or "shift" in name or "anchor" in name:  # Biases; the memory's offsets.
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def full():
  model = pgm.PGM(width=WIDTH, upsample="subpixel", num_items=6)
  return model, _init(model, _window()[:, :-1])


def test_shapes_and_parameter_tree(full):
  model, variables = full
  window = _window()
  (pred, aux), _ = model.apply(variables, window[:, :-1], train=True, mutable=["memory"])
  c = backbone.scaled(512, WIDTH)
  assert pred.shape == (2, 16, 16, 3) and aux["diff"].shape == (2, 16, 16, 12)
  assert aux["z"].shape == aux["z_hat"].shape == (2, 2, 2, c)
  assert aux["queries"].shape == (2, 4, c) and aux["items"].shape == (6, c)
  params = variables["params"]
  assert set(params) == {"encoder", "decoder", "head", "diff_decoder", "diff_head", "memory"}
  assert params["memory"]["shift"].shape == (6, c)
  assert variables["memory"]["memory"]["items"].shape == (6, c)
  # The skip-free decoder has fewer input channels after each upsampling than the U-Net one.
  assert _count(params["diff_decoder"]) < _count(params["decoder"])
  assert params["diff_head"]["Conv_2"]["kernel"].shape[-1] == 12
  # Prediction branch = the baseline's parameters exactly.
  base = pgm.PGM(width=WIDTH, upsample="subpixel", use_memory=False, use_diff=False)
  shapes = jax.eval_shape(base.init, jax.random.PRNGKey(0), window[:, :-1])
  assert set(shapes) == {"params"} and set(shapes["params"]) == {"encoder", "decoder", "head"}
  assert _count(shapes["params"]) == sum(_count(params[k]) for k in ("encoder", "decoder", "head"))


def test_difference_head_is_twice_a_tanh_head(full):
  """x^_diff = 2 tanh(head(diff-decoder features)) (Eq. 4, values in [-2, 2]) against NumPy; the head's
  last bias is set so that the tanh saturates and the factor 2 shows."""
  model, variables = full
  params = variables["params"]
  bias = jnp.linspace(-3.0, 3.0, 12)  # Pre-activations up to +-3: tanh saturates.
  head = {**params["diff_head"], "Conv_2": {**params["diff_head"]["Conv_2"], "bias": bias}}
  variables = {**variables, "params": {**params, "diff_head": head}}
  (_, aux), state = model.apply(variables, _window()[:, :-1], train=False, mutable=["intermediates"],
                                capture_intermediates=lambda mdl, _: isinstance(mdl, backbone.Decoder))
  dfeats = state["intermediates"]["diff_decoder"]["__call__"][0]  # [B, H, W, 64w]
  ref = 2.0 * numpy_output_head(head, dfeats)
  assert np.max(np.abs(ref)) > 1.8
  np.testing.assert_allclose(aux["diff"], ref, atol=2e-4)


def test_no_memory_when_num_items_zero():
  model = pgm.PGM(width=WIDTH, upsample="subpixel", num_items=0)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), _window()[:, :-1])
  assert set(shapes) == {"params"} and "memory" not in shapes["params"]


def test_difference_branch_has_no_skip_path(full):
  """Replacing the skips fed to each decoder changes the prediction but never x_diff."""
  model, variables = full
  x = _window()[:, :-1]

  def perturb(name):
    def interceptor(next_fun, args, kwargs, context):
      if isinstance(context.module, backbone.Decoder) and context.module.name == name:
        z, skips = args[0], args[1]
        args = (z, tuple(s + 10.0 for s in skips), *args[2:])
      return next_fun(*args, **kwargs)
    return interceptor

  pred, aux = model.apply(variables, x)
  with nn.intercept_methods(perturb("diff_decoder")):
    pred_d, aux_d = model.apply(variables, x)
  np.testing.assert_array_equal(aux_d["diff"], aux["diff"])
  np.testing.assert_array_equal(pred_d, pred)
  with nn.intercept_methods(perturb("decoder")):
    pred_p, _ = model.apply(variables, x)
  assert not np.allclose(pred_p, pred)


def test_diff_target_layout():
  window = np.asarray(_window(1))
  target = np.asarray(pgm.diff_target(jnp.asarray(window)))
  for i in range(4):  # Oldest first, like stack_frames.
    np.testing.assert_allclose(target[..., 3 * i:3 * i + 3], window[:, i] - window[:, 4], atol=1e-6)


def _numpy_l_dis(q, m):
  """L_dis = Tr(S_W) / Tr(S_B) of one sample (PGM Eq. 13-17, SPEC 4) with loops: q [K, C], m [N, C]."""
  q, m = np.asarray(q, np.float64), np.asarray(m, np.float64)
  k = q.shape[0]
  cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (m / np.linalg.norm(m, axis=1, keepdims=True)).T
  assign = np.argmax(cos, axis=1)
  mean_m = m.mean(axis=0)
  tr_sb = tr_sw = 0.0
  for j in range(m.shape[0]):
    members = [i for i in range(k) if assign[i] == j]
    tr_sb += len(members) / k * np.sum((m[j] - mean_m) ** 2)
    tr_sw += len(members) / k * sum(np.sum((q[i] - m[j]) ** 2) for i in members)
  return tr_sw / max(tr_sb, 1e-6)


def test_loss_and_score_match_numpy(full):
  model, variables = full
  window = _window(2)
  (pred, aux), _ = model.apply(variables, window[:, :-1], train=True, mutable=["memory"])
  loss, metrics = pgm.loss_fn(pred, aux, window, LOSS_CONFIG)
  w = np.asarray(window)
  l_pred = np.mean((np.asarray(pred) - w[:, -1]) ** 2)
  target = np.concatenate([w[:, i] - w[:, -1] for i in range(4)], axis=-1)
  l_diff = np.mean((np.asarray(aux["diff"]) - target) ** 2)
  q, m = np.asarray(aux["queries"]), np.asarray(aux["items"])
  l_dis = np.mean([_numpy_l_dis(qb, m) for qb in q])
  np.testing.assert_allclose([metrics["l_pred"], metrics["l_diff"], metrics["l_dis"]], [l_pred, l_diff, l_dis],
                             rtol=1e-5)
  np.testing.assert_allclose(loss, l_pred + 0.1 * l_diff + l_dis, rtol=1e-5)
  nearest = np.argmax(q.reshape(-1, q.shape[-1]) @ m.T, axis=1)
  assert int(metrics["items_used"]) == len(set(nearest.tolist()))
  m_hat = m / np.linalg.norm(m, axis=1, keepdims=True)
  mean_dir = m_hat.mean(0) / np.linalg.norm(m_hat.mean(0))
  np.testing.assert_allclose(metrics["d_m"], np.mean(m_hat @ mean_dir), rtol=1e-5)  # Eq. 26 / N
  scores = pgm.score_fn(pred, aux, window, LOSS_CONFIG)
  dist = [np.mean([np.min(np.linalg.norm(qi - m, axis=-1)) for qi in qb]) for qb in q]
  np.testing.assert_allclose(scores["memory_distance"], dist, rtol=1e-4)
  no_dis = LOSS_CONFIG.copy_and_resolve_references()
  no_dis.use_dis = False
  assert "l_dis" not in pgm.loss_fn(pred, aux, window, no_dis)[1]


def _health_config(scope="nearest", n=100):
  return ml_collections.ConfigDict(dict(num_items=n, update_scope=scope))


def test_health_fn_flags_a_collapsed_memory():
  """Thresholds against the probe's measurements (docs/pgm.md): the paper rule after 60 quick steps
  (4.1 of 100 items in use, d_m 1.000) warns, the nearest rule (17 items, d_m 0.19) does not."""
  healthy = {"items_used": 17.0, "d_m": 0.194, "l_dis": 0.0036}
  collapsed = {"items_used": 4.1, "d_m": 0.99999, "l_dis": 8.75}
  assert pgm.health_fn(healthy, _health_config()) == []
  warnings = pgm.health_fn(collapsed, _health_config("all"))
  assert len(warnings) == 2 and all("collapse" in w for w in warnings)
  assert "4.1 of 100" in warnings[0] and "update_scope='all'" in warnings[0]
  assert pgm.health_fn({"items_used": 3.0, "d_m": 0.2}, _health_config(n=100)) != []  # Few items in use.
  assert pgm.health_fn({"items_used": 40.0, "d_m": 0.95}, _health_config(n=100)) != []  # Items alike.
  assert pgm.health_fn({"l_pred": 0.1}, _health_config()) == []  # No memory metrics: nothing to say.
  assert models.build(config_lib.load_config("configs/pgm.py:quick").model).health_fn is pgm.health_fn


@pytest.mark.slow
def test_paper_update_rule_collapses_and_health_fn_says_so():
  """Regression: a few training steps of the quick model with the paper's rule drive d_m to ~1 and
  health_fn warns; MNAD's nearest rule keeps the items apart (docs/pgm.md)."""
  rows = {}
  for scope in ("all", "nearest"):
    c = config_lib.load_config("configs/pgm.py:quick")
    c.model.update(width=0.0625, update_scope=scope, num_items=20)
    mdef = models.build(c.model)
    tx = state_lib.make_optimizer(c.optim)
    window = jax.random.uniform(jax.random.PRNGKey(0), (4, 5, 32, 32, 3), minval=-1, maxval=1)
    state = state_lib.init_state(mdef.module, tx, jax.random.PRNGKey(0), window[:, :-1])
    step = jax.jit(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, c.model))
    for i in range(12):
      batch = jax.random.uniform(jax.random.PRNGKey(i + 1), (4, 5, 32, 32, 3), minval=-1, maxval=1)
      state, metrics = step(state, {"frames": batch}, jax.random.PRNGKey(0))
    rows[scope] = {k: float(v) for k, v in metrics.items()}
    rows[scope]["warnings"] = mdef.health_fn(rows[scope], c.model)
  assert rows["all"]["d_m"] > 0.9 and rows["all"]["warnings"], rows["all"]
  assert rows["nearest"]["d_m"] < 0.5 and not rows["nearest"]["warnings"], rows["nearest"]


def test_memory_only_changes_in_training(full):
  model, variables = full
  x = _window()[:, :-1]
  _, mut = model.apply(variables, x, train=False, mutable=["memory"])
  jax.tree.map(np.testing.assert_array_equal, mut["memory"], variables["memory"])
  _, mut = model.apply(variables, x, train=True, mutable=["memory"])
  items = mut["memory"]["memory"]["items"]
  assert not np.allclose(items, variables["memory"]["memory"]["items"])
  np.testing.assert_allclose(np.linalg.norm(items, axis=-1), 1.0, atol=1e-5)


def test_build_from_config():
  c = config_lib.load_config("configs/pgm.py:quick")
  mdef = models.build(c.model)
  assert isinstance(mdef.module, pgm.PGM) and mdef.loss_fn is pgm.loss_fn and mdef.score_fn is pgm.score_fn
  assert dict(c.eval.score_weights) == {"psnr": 0.6, "memory_distance": 0.4}
  assert dict(config_lib.load_config("configs/pgm.py:ped2_n0").eval.score_weights) == {"psnr": 1.0}


def test_short_training_decreases_loss_and_trains_items(full):
  model, _ = full
  config = LOSS_CONFIG
  tx = optax.adam(3e-3)
  window = _window(3, b=4)
  variables = _init(model, window[:, :-1], seed=1)
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               opt_state=tx.init(variables["params"]), model_state={"memory": variables["memory"]})
  fn = jax.jit(step_lib.make_train_step(model, pgm.loss_fn, tx, config))
  first = None
  start = state
  for i in range(40):
    state, metrics = fn(state, {"frames": window}, jax.random.PRNGKey(0))
    first = first if first is not None else float(metrics["loss"])
  assert float(metrics["loss"]) < 0.7 * first, (first, float(metrics["loss"]))
  assert not np.allclose(state.params["memory"]["shift"], start.params["memory"]["shift"])
  assert not np.allclose(state.model_state["memory"]["memory"]["items"],
                         start.model_state["memory"]["memory"]["items"])


MULTI_DEVICE_SCRIPT = r"""
import jax, numpy as np
from jaxvad import config_lib
from jaxvad.data import synthetic
from jaxvad.data.windows import WindowSource
from jaxvad.train import loop, mesh as mesh_lib, step as step_lib
assert jax.device_count() == 4, jax.devices()
c = config_lib.load_config("configs/pgm.py:quick")
c.data = config_lib.data_config("synthetic", size=16)
c.data.synthetic.update(num_scenes=2, train_videos_per_scene=1, test_videos_per_scene=1, frames_per_video=24)
c.model.update(width=0.0625, num_items=8)
split = synthetic.make_benchmark(size=16, **c.data.synthetic)["training"]
source = WindowSource(split, t=4)
out = {}
for n in (1, 4):
  mesh = mesh_lib.make_mesh(n)
  mdef, tx, state = loop.create_train_state(c, mesh, (16, 16))
  fn = step_lib.jit_train_step(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, c.model), mesh)
  for step in range(2):
    state, metrics = fn(state, mesh_lib.shard_batch(source.batch_at(step, 4, 0), mesh), jax.random.PRNGKey(0))
  out[n] = (float(metrics["loss"]), jax.device_get(state.params), jax.device_get(state.model_state))
assert abs(out[1][0] - out[4][0]) < 1e-5, (out[1][0], out[4][0])
diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
d_params, d_mem = diff(out[1][1], out[4][1]), diff(out[1][2], out[4][2])
assert d_params < 1e-5 and d_mem < 1e-5, (d_params, d_mem)
start = loop.create_train_state(c, mesh_lib.make_mesh(1), (16, 16))[2].model_state
assert diff(start, out[1][2]) > 1e-3  # The memory did move.
print("max param diff", d_params, "max memory diff", d_mem)
"""


def test_four_device_step_with_memory_update_matches_one_device():
  assert "max memory diff" in run_on_cpu_devices(MULTI_DEVICE_SCRIPT, 4, timeout=400)
