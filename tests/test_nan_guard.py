"""The NaN guard and run health: exact bad step, nothing saved after it, warnings, observable runs."""

import logging
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad import models
from jaxvad.data import synthetic
from jaxvad.data.windows import WindowSource
from jaxvad.errors import NonFiniteError
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import health
from jaxvad.train import loop
from jaxvad.train import mesh as mesh_lib
from jaxvad.train import step as step_lib
from jaxvad.train.metrics_log import ScalarWriter, read_metrics
from tests.test_train import tiny_config


@pytest.fixture(scope="module")
def split():
  c = tiny_config()
  return synthetic.make_benchmark(size=16, **c.data.synthetic)["training"]


def _poison_step_at(monkeypatch, bad_step: int):
  """Makes the training step that brings the state to ``bad_step`` see NaN frames (in-graph)."""
  make = step_lib.make_train_step

  def make_poisoned(*args, **kwargs):
    inner = make(*args, **kwargs)

    def train_step(state, batch, rng):
      scale = jnp.where(state.step + 1 == bad_step, jnp.nan, 1.0)
      return inner(state, {**batch, "frames": batch["frames"] * scale}, rng)

    return train_step

  monkeypatch.setattr(step_lib, "make_train_step", make_poisoned)


def test_error_names_exact_step_and_a_good_checkpoint(tmp_path, split, monkeypatch):
  # log_every 7 and checkpoint_every 4 do not line up: logs at 7, 14, ...; saves at 4, 8, 12, ...
  # The NaN at step 10 is found before the save of step 12 (not at the log of step 14).
  config = tiny_config(num_steps=70, log_every=7, checkpoint_every=4, keep_checkpoints=5)
  _poison_step_at(monkeypatch, 10)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "train_done.json").write_text("{}")  # A stale marker of an earlier run.
  with pytest.raises(NonFiniteError) as e:
    loop.train(config, workdir, split, progress=False)
  msg = str(e.value)
  assert "\n" not in msg
  assert "diverged at step 10:" in msg and "checkpoint is step 8 " in msg and "learning_rate" in msg
  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints")
  assert ckpt._manager.all_steps() == [4, 8]  # Nothing after the bad step.
  _, _, target = loop.create_train_state(config, mesh_lib.make_mesh(1), (16, 16))
  restored = ckpt.restore(target)
  ckpt.close()
  assert int(restored.step) == 8 and ckpt_lib.nonfinite_leaves(restored) == []
  assert not (workdir / "train_done.json").exists()
  assert [r["step"] for r in read_metrics(workdir / "metrics.jsonl")] == [7]


def test_nan_in_adam_moment_is_caught_and_not_applied(split):
  config = tiny_config()
  mesh = mesh_lib.make_mesh(1)
  mdef, tx, state = loop.create_train_state(config, mesh, (16, 16))
  fn = step_lib.jit_train_step(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model), mesh)
  batch = mesh_lib.shard_batch(WindowSource(split, t=4).batch_at(0, 4, 0), mesh)
  rng = jax.random.PRNGKey(0)
  state, metrics = fn(state, batch, rng)
  assert int(metrics["nonfinite"]) == 0
  for value in (np.nan, np.inf):
    # One flipped value in the first moment: loss and gradients stay finite, the update is not.
    mu = state.opt_state[0].mu
    leaf = jax.tree.leaves(mu)[0]
    mu = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(value) if x is leaf else x, mu)
    state = state.replace(opt_state=(state.opt_state[0]._replace(mu=mu),) + tuple(state.opt_state[1:]))
    before = jax.device_get(state.params)
    state, metrics = fn(state, batch, rng)
    flag = int(metrics["nonfinite"])
    assert flag & step_lib.NONFINITE_STATE and not flag & step_lib.NONFINITE_LOSS, flag
    jax.tree.map(np.testing.assert_array_equal, before, jax.device_get(state.params))
  pending = health.PendingMetrics(lambda: None, "ckpt", "lower it")
  pending.add(5, metrics)
  with pytest.raises(NonFiniteError, match="step 5: non-finite new parameters or optimiser state"):
    pending.check()


def test_dead_network_warns_after_three_zero_windows():
  monitor = health.HealthMonitor()
  assert monitor(1, {"grad_norm": 0.0}) == [] and monitor(2, {"grad_norm": 0.0}) == []
  assert "exactly 0" in monitor(3, {"grad_norm": 0.0})[0]
  assert monitor(4, {"grad_norm": 1e-9}) == []  # Not exactly zero: the count restarts.
  assert monitor(5, {"grad_norm": 0.0}) == []


def test_observable_run_metrics_lines_warnings_and_tensorboard(tmp_path, split, monkeypatch, caplog):
  """A run without progress bars logs one metrics line a window, writes health warnings into
  metrics.jsonl (dead network, the model's health_fn) and TensorBoard scalars through a writer library."""
  scalars = []

  class FakeSummaryWriter:  # Stands in for tensorboardX (not a dependency).
    def __init__(self, logdir, purge_step=None):
      self.logdir = logdir

    def add_scalar(self, tag, value, step):
      scalars.append((tag, step, value))

    def flush(self):
      pass

    def close(self):
      pass

  monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeSummaryWriter))
  build = models.build
  monkeypatch.setattr(models, "build", lambda mc: build(mc).__class__(
      *list(build(mc).__dict__.values())[:3], health_fn=lambda m, c: ["memory items collapsed"]))
  make = step_lib.make_train_step

  def make_dead(*args, **kwargs):  # Reports a zero gradient norm, as a dead network would.
    inner = make(*args, **kwargs)

    def train_step(state, batch, rng):
      state, metrics = inner(state, batch, rng)
      return state, {**metrics, "grad_norm": 0.0 * metrics["grad_norm"]}

    return train_step

  monkeypatch.setattr(step_lib, "make_train_step", make_dead)
  config = tiny_config(num_steps=10, log_every=50, checkpoint_every=50)  # log_every scaled to 1.
  with caplog.at_level(logging.INFO):
    loop.train(config, tmp_path / "run", split, progress=False)
  lines = [r.getMessage() for r in caplog.records if r.name == loop.__name__ and r.levelno == logging.INFO
           and r.getMessage().startswith("step ")]
  assert [line.split(":")[0] for line in lines] == [f"step {s}/10" for s in range(1, 11)]
  assert "loss" in lines[0] and "grad_norm" in lines[0]
  log = read_metrics(tmp_path / "run" / "metrics.jsonl")
  assert [r["step"] for r in log] == list(range(1, 11))
  assert log[0]["warnings"] == ["memory items collapsed"]
  assert any("exactly 0" in w for w in log[2]["warnings"]) and not any("exactly 0" in w for w in log[1]["warnings"])
  assert any("exactly 0" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
  assert {(tag, step) for tag, step, _ in scalars} >= {("loss", s) for s in (1, 2, 3, 4)}
  assert dict(((t, s), v) for t, s, v in scalars)[("loss", 1)] == pytest.approx(log[0]["loss"])
  assert (tmp_path / "run" / "train_done.json").exists()


def test_log_interval_scales_to_short_runs():
  assert loop.log_interval(50, 50) == 5  # One window at the end -> about 10.
  assert loop.log_interval(50, 99) == 9
  assert loop.log_interval(50, 10) == 1
  assert loop.log_interval(50, 9) == 50  # Under 10 steps: one line, at the end.
  assert loop.log_interval(2, 2) == 2
  assert loop.log_interval(50, 100) == 50  # Two windows or more: as set.
  assert loop.log_interval(50, 10_000) == 50
  assert loop.log_interval(2, 4) == 2


def test_tensorboard_file_with_an_installed_writer(tmp_path):
  writer = ScalarWriter(tmp_path / "tb")
  if not writer.enabled:
    pytest.skip("no tensorboardX, tensorboard or tensorflow installed")
  writer.write(3, {"loss": 0.5})
  writer.close()
  assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_meta_step_guards_the_whole_new_state():
  from jaxvad.meta import step as meta_step_lib
  from tests.test_meta import toy_problem, toy_task_loss
  theta, alpha, frozen, episodes = toy_problem(jnp.float32)
  tx = meta_step_lib.make_meta_optimizer(1e-3)
  fn = jax.jit(meta_step_lib.make_meta_step(toy_task_loss, tx, batching="unroll"))
  state, metrics = fn(meta_step_lib.init_meta_state(theta, alpha, tx), frozen, episodes)
  assert int(metrics["nonfinite"]) == 0
  adam = state.opt_state[0]
  mu = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), adam.mu)  # A NaN in every first moment.
  state = state.replace(opt_state=(adam._replace(mu=mu),) + tuple(state.opt_state[1:]))
  before = jax.device_get((state.theta, state.alpha))
  state, metrics = fn(state, frozen, episodes)
  assert int(metrics["nonfinite"]) == step_lib.NONFINITE_STATE and int(state.step) == 2
  jax.tree.map(np.testing.assert_array_equal, before, jax.device_get((state.theta, state.alpha)))
