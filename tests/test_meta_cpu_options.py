"""The meta step's and Meta-SGD adaptation's CPU compiler options: chosen by frame size, same numbers.

`jaxvad.train.step.cpu_meta_compiler_options` gives the train step's option (convolutions off YNNPACK) from
`CPU_META_MIN_PIXELS` up and nothing below it or off CPU. Forced on at 16x16 (threshold lowered), the meta step
(second order) and `fewshot.Adapter`'s adaptation compute what the default program computes (float32 rounding).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import config_lib, models
from jaxvad.meta import core, fewshot
from jaxvad.meta import step as meta_step_lib
from jaxvad.train import mesh as mesh_lib
from jaxvad.train import step as step_lib

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU compiler options; nothing to check on GPU/TPU")


def _options_or_skip():
  options = step_lib.cpu_train_compiler_options()
  if not options:
    pytest.skip("this jaxlib does not accept the YNNPACK fusion option")
  return dict(options)


def test_options_by_frame_size_and_platform():
  options = _options_or_skip()
  cpu = jax.devices("cpu")
  assert step_lib.cpu_meta_compiler_options((64, 64), cpu) is None
  assert step_lib.cpu_meta_compiler_options(None, cpu) is None
  assert step_lib.cpu_meta_compiler_options((128, 128), cpu) == options
  assert step_lib.cpu_meta_compiler_options((256, 256), cpu) == options
  assert step_lib.cpu_meta_compiler_options((256, 256), [types.SimpleNamespace(platform="gpu")]) is None


@pytest.fixture(scope="module")
def problem():
  config = config_lib.load_config("configs/mpn.py:quick")
  config.model.update(width=0.0625, num_prototypes=3)
  mdef = models.build(config.model)
  t = config.data.t
  params = mdef.module.init(jax.random.PRNGKey(0), jnp.zeros((1, t, 16, 16, 3)))["params"]
  theta, frozen = core.split_params(params)
  rng = np.random.default_rng(0)
  episodes = {"support": rng.uniform(-1, 1, (2, 2, t + 1, 16, 16, 3)).astype(np.float32),
              "query": rng.uniform(-1, 1, (2, 1, t + 1, 16, 16, 3)).astype(np.float32)}
  return config, mdef, theta, frozen, episodes


def _meta_step(problem, min_pixels, monkeypatch):
  config, mdef, theta, frozen, episodes = problem
  monkeypatch.setattr(step_lib, "CPU_META_MIN_PIXELS", min_pixels)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  tx = meta_step_lib.make_meta_optimizer(1e-3)
  mesh = mesh_lib.make_mesh(1)
  fn = meta_step_lib.jit_meta_step(meta_step_lib.make_meta_step(task_loss, tx, first_order=False,
                                                                batching="unroll"), mesh, frame_hw=(16, 16))
  state = jax.device_put(meta_step_lib.init_meta_state(theta, core.init_alpha(theta, 1e-2), tx),
                         mesh_lib.replicated(mesh))
  eps = mesh_lib.shard_batch(episodes, mesh)
  text = fn.lower(state, frozen, eps).compile().as_text()
  new_state, metrics = fn(state, frozen, eps)
  return jax.device_get(new_state), jax.device_get(metrics), text


def test_meta_step_with_options_computes_the_same_step(problem, monkeypatch):
  _options_or_skip()
  default, m_default, text_default = _meta_step(problem, 10 ** 9, monkeypatch)
  forced, m_forced, text_forced = _meta_step(problem, 0, monkeypatch)
  assert "ynn_fusion" in text_default and text_forced != text_default  # The options reached the program.
  for name in ("meta_loss", "query_loss_before", "theta_grad_norm", "alpha_grad_norm"):
    np.testing.assert_allclose(m_forced[name], m_default[name], rtol=1e-4, err_msg=name)
  for a, b in zip(jax.tree.leaves((forced.theta, forced.alpha)), jax.tree.leaves((default.theta, default.alpha))):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_adapter_with_options_adapts_the_same(problem, monkeypatch):
  _options_or_skip()
  config, mdef, theta, frozen, episodes = problem
  alpha = core.init_alpha(theta, 1e-1)
  support = episodes["support"][0]  # [K, T+1, H, W, 3]
  out, text = {}, {}
  for name, min_pixels in (("default", 10 ** 9), ("forced", 0)):
    monkeypatch.setattr(step_lib, "CPU_META_MIN_PIXELS", min_pixels)
    adapter = fewshot.Adapter(mdef, config.model, frozen)
    out[name] = jax.device_get(adapter.adapt("meta", theta, alpha, support))
    jitted = adapter._meta[(16, 16)]  # pylint: disable=protected-access
    text[name] = jitted.lower(theta, alpha, frozen, support).compile().as_text()
  assert "ynn_fusion" in text["default"] and text["forced"] != text["default"]
  moved = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(out["default"]), jax.tree.leaves(theta))]
  assert max(moved) > 1e-4  # The step really moves theta, so equality below is not trivial.
  for a, b in zip(jax.tree.leaves(out["forced"]), jax.tree.leaves(out["default"])):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
