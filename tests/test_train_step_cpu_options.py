"""The CPU train step's compiler options (convolutions off YNNPACK) change speed, not numbers.

One MPN step (16x16, tiny width, Adam) compiled with and without `step.CPU_TRAIN_COMPILER_OPTIONS`
from the same state gives the same loss and gradient norm (relative 1e-5) and the same parameters
(absolute 1e-7, i.e. 0.1 % of the 1e-4 learning-rate step), and the options really reach the program.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvad.models import mpn
from jaxvad.train import mesh as mesh_lib
from jaxvad.train import step as step_lib
from jaxvad.train.state import TrainState

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")


def _problem():
  module = mpn.MPN(width=0.0625, upsample="conv_transpose_subpixel", num_prototypes=3, conv="xla")
  window = jax.random.uniform(jax.random.PRNGKey(0), (2, 5, 16, 16, 3), minval=-1, maxval=1)
  params = module.init(jax.random.PRNGKey(1), window[:, :-1])["params"]
  tx = optax.adam(1e-4)
  config = mpn_config()
  return module, tx, config, params, {"frames": window}


def mpn_config():
  import ml_collections  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(dict(lambda1=1.0, lambda2=0.01, gamma=1.0, compactness="mean",
                                        compactness_channels=None))


def _ynn_convolutions(hlo: str) -> int:
  """How many YNNPACK fusions (``%ynn_fusion... calls=%C``) call a computation C holding a convolution."""
  with_conv, header = set(), None
  for line in hlo.splitlines():
    if line.rstrip().endswith("{") and " = " not in line:
      header = line.split()[0].lstrip("%") if not line.startswith("ENTRY") else "ENTRY"
    elif " convolution(" in line:
      with_conv.add(header)
  calls = re.findall(r"%ynn_fusion[\w.]* = .*?calls=%([\w.\-]+)", hlo)
  return sum(c in with_conv for c in calls)


def _run(module, tx, config, params, batch, options):
  mesh = mesh_lib.make_mesh(1)
  original = step_lib.cpu_train_compiler_options
  step_lib.cpu_train_compiler_options = lambda: options
  try:
    fn = step_lib.jit_train_step(step_lib.make_train_step(module, mpn.loss_fn, tx, config), mesh)
  finally:
    step_lib.cpu_train_compiler_options = original
  params = jax.tree.map(jnp.array, params)  # A copy: the step donates its state.
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), model_state={})
  state = jax.device_put(state, mesh_lib.replicated(mesh))
  batch = mesh_lib.shard_batch(batch, mesh)
  text = fn.lower(state, batch, jax.random.PRNGKey(0)).compile().as_text()
  new_state, metrics = fn(state, batch, jax.random.PRNGKey(0))
  return new_state, metrics, text


def test_train_step_with_cpu_options_computes_the_same_step():
  options = step_lib.cpu_train_compiler_options()
  if not options:
    pytest.skip("this jaxlib does not accept the YNNPACK fusion option")
  problem = _problem()
  before, m_before, text_before = _run(*problem, ())
  after, m_after, text_after = _run(*problem, options)
  assert _ynn_convolutions(text_before) > 0  # YNNPACK convolutions by default, none with the options.
  assert _ynn_convolutions(text_after) == 0 and "ynn_fusion" in text_before
  assert int(m_after["nonfinite"]) == 0
  np.testing.assert_allclose(m_after["loss"], m_before["loss"], rtol=1e-5)
  np.testing.assert_allclose(m_after["grad_norm"], m_before["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_env_turns_the_options_off(monkeypatch):
  monkeypatch.setenv("JAXVAD_TRAIN_YNN_CONV", "1")
  step_lib.cpu_train_compiler_options.cache_clear()
  try:
    assert step_lib.cpu_train_compiler_options() == ()
  finally:
    monkeypatch.delenv("JAXVAD_TRAIN_YNN_CONV")
    step_lib.cpu_train_compiler_options.cache_clear()
  assert dict(step_lib.cpu_train_compiler_options()) in ({}, step_lib.CPU_TRAIN_COMPILER_OPTIONS)



def test_rejected_option_falls_back_and_says_so(monkeypatch, caplog):
  """A jaxlib that rejects the option gets the default program, and the log says why."""
  monkeypatch.setattr(step_lib, "CPU_TRAIN_COMPILER_OPTIONS", {"xla_cpu_no_such_option_for_jaxvad": "1"})
  monkeypatch.delenv("JAXVAD_TRAIN_YNN_CONV", raising=False)
  with caplog.at_level("INFO", logger="jaxvad.train.step"):
    assert step_lib.cpu_train_compiler_options.__wrapped__() == ()
  assert "xla_cpu_no_such_option_for_jaxvad" in caplog.text and "default path" in caplog.text
