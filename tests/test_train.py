"""Trainer: overfit, no recompiles, checkpoint round trip, exact resume, NaN guard, 1 vs 4 devices."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxvad import config_lib
from jaxvad.data import synthetic
from jaxvad.data.windows import WindowSource
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import loop
from jaxvad.train import mesh as mesh_lib
from jaxvad.train import step as step_lib
from jaxvad.train.metrics_log import read_metrics


def tiny_config(**train) -> ml_collections.ConfigDict:
  c = config_lib.load_config("configs/baseline.py:quick")
  c.data = config_lib.data_config("synthetic", size=16)
  c.data.synthetic.update(num_scenes=2, train_videos_per_scene=1, test_videos_per_scene=1, frames_per_video=24)
  c.model.update(width=0.0625)
  c.train.update({**dict(batch_size=4, num_steps=6, log_every=3, checkpoint_every=3), **train})
  return c


@pytest.fixture(scope="module")
def split():
  c = tiny_config()
  return synthetic.make_benchmark(size=16, **c.data.synthetic)["training"]


def _step_fn(config, mesh):
  mdef, tx, state = loop.create_train_state(config, mesh, (16, 16))
  fn = step_lib.jit_train_step(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model), mesh)
  return fn, state


def test_overfits_one_batch(split):
  config = tiny_config()
  config.optim.learning_rate = 3e-3
  mesh = mesh_lib.make_mesh(1)
  fn, state = _step_fn(config, mesh)
  batch = mesh_lib.shard_batch(WindowSource(split, t=4).batch_at(0, 4, seed=0), mesh)
  rng = jax.random.PRNGKey(0)
  state, first = fn(state, batch, rng)
  for _ in range(150):
    state, metrics = fn(state, batch, rng)
  assert float(metrics["loss"]) < 0.2 * float(first["loss"])


def test_step_does_not_recompile(split):
  config = tiny_config()
  mesh = mesh_lib.make_mesh(1)
  fn, state = _step_fn(config, mesh)
  source = WindowSource(split, t=4)
  rng = jax.random.PRNGKey(0)
  state, _ = fn(state, mesh_lib.shard_batch(source.batch_at(0, 4, 0), mesh), rng)
  size = fn._cache_size()
  for step in range(1, 4):
    state, _ = fn(state, mesh_lib.shard_batch(source.batch_at(step, 4, 0), mesh), rng)
  assert fn._cache_size() == size == 1


def test_nan_guard_keeps_state_and_flags(split):
  config = tiny_config()
  mesh = mesh_lib.make_mesh(1)
  fn, state = _step_fn(config, mesh)
  before = jax.device_get(state.params)
  batch = WindowSource(split, t=4).batch_at(0, 4, 0)
  batch["frames"] = batch["frames"] * np.nan
  state, metrics = fn(state, mesh_lib.shard_batch(batch, mesh), jax.random.PRNGKey(0))
  assert int(metrics["nonfinite"]) != 0 and int(state.step) == 1
  jax.tree.map(np.testing.assert_array_equal, before, jax.device_get(state.params))


def test_checkpoint_round_trip_is_exact(tmp_path, split):
  config = tiny_config()
  mesh = mesh_lib.make_mesh(1)
  _, _, state = loop.create_train_state(config, mesh, (16, 16))
  state = state.replace(step=jnp.asarray(7, jnp.int32))
  ckpt = ckpt_lib.Checkpointer(tmp_path / "ckpt")
  ckpt.save(7, state)
  ckpt.wait()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  restored = ckpt.restore(abstract)
  ckpt.close()
  assert ckpt.latest_step == 7
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(restored))


def test_resumed_run_equals_uninterrupted(tmp_path, split):
  config = tiny_config()
  full = loop.train(config, tmp_path / "full", split, progress=False)
  with pytest.raises(loop.TrainInterrupted):
    loop.train(config, tmp_path / "cut", split, progress=False, stop_after=3)
  resumed = loop.train(config, tmp_path / "cut", split, progress=False)
  assert int(resumed.step) == int(full.step) == 6
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.params), jax.device_get(resumed.params))
  full_log = read_metrics(tmp_path / "full" / "metrics.jsonl")
  cut_log = read_metrics(tmp_path / "cut" / "metrics.jsonl")
  assert [r["step"] for r in full_log] == [r["step"] for r in cut_log] == [3, 6]
  assert [r["loss"] for r in full_log] == [r["loss"] for r in cut_log]


def test_nonfinite_loss_stops_training(tmp_path, split):
  config = tiny_config()
  config.optim.learning_rate = 1e30  # Diverges within a few steps.
  with pytest.raises(FloatingPointError, match="non-finite"):
    loop.train(config, tmp_path / "nan", split, progress=False)


MULTI_DEVICE_SCRIPT = r"""
import jax, numpy as np
from jaxvad.data import synthetic
from jaxvad.data.windows import WindowSource
from jaxvad.train import mesh as mesh_lib
import tests.test_train as tt
assert jax.device_count() == 4, jax.devices()
config = tt.tiny_config()
split = synthetic.make_benchmark(size=16, **config.data.synthetic)["training"]
source = WindowSource(split, t=4)
out = {}
for n in (1, 4):
  mesh = mesh_lib.make_mesh(n)
  fn, state = tt._step_fn(config, mesh)
  for step in range(3):
    state, metrics = fn(state, mesh_lib.shard_batch(source.batch_at(step, 4, 0), mesh), jax.random.PRNGKey(0))
  out[n] = (float(metrics["loss"]), jax.device_get(state.params))
assert abs(out[1][0] - out[4][0]) < 1e-5, (out[1][0], out[4][0])
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(out[1][1]), jax.tree.leaves(out[4][1])))
assert diff < 1e-5, diff
# Evaluation on the mesh: the same scores on 4 devices as on 1.
from jaxvad import pipeline
from jaxvad.evaluate import scoring
from jaxvad.models import build
test = synthetic.make_benchmark(size=16, **config.data.synthetic)["testing"]
mdef = build(config.model)
psnr = {}
for n in (1, 4):
  mesh = mesh_lib.make_mesh(n)
  predict_fn = pipeline.make_predict_fn(mdef, {"params": out[1][1]}, config.model, mesh)
  vs = scoring.score_split(test, predict_fn, t=4, batch_size=pipeline.eval_batch_size(6, mesh), progress=False)
  psnr[n] = np.concatenate(vs.scores["psnr"])
np.testing.assert_allclose(psnr[4], psnr[1], rtol=0, atol=1e-4)
print("max param diff", diff, "loss", out[1][0], out[4][0], "scored", psnr[1].size)
"""


def test_four_device_mesh_matches_one_device():
  """Data parallelism over 4 simulated CPU devices gives the 1-device loss and parameters (to 1e-5), and
  evaluation on the mesh the 1-device scores."""
  from conftest import run_on_cpu_devices  # Here, not at the top: subprocesses import this module.
  assert "max param diff" in run_on_cpu_devices(MULTI_DEVICE_SCRIPT, 4, timeout=300)


KILLED_SCRIPT = r"""
import sys, time
from jaxvad.data import synthetic
from jaxvad.data import windows
from jaxvad.train import loop
import tests.test_train as tt
_batch_at = windows.WindowSource.batch_at
def slow_batch_at(self, *a, **k):  # Slows the run so that the parent can kill it mid-way.
  time.sleep(0.05)
  return _batch_at(self, *a, **k)
windows.WindowSource.batch_at = slow_batch_at
config = tt.tiny_config(num_steps=60, log_every=3, checkpoint_every=3)
split = synthetic.make_benchmark(size=16, **config.data.synthetic)["training"]
loop.train(config, sys.argv[1], split, progress=False)
"""


def test_resume_after_kill_9_equals_uninterrupted(tmp_path, split):
  """SIGKILL mid-run (possibly while a checkpoint is written), resume: bit-identical parameters."""
  import os, pathlib, signal, subprocess, sys, time  # pylint: disable=import-outside-toplevel,multiple-imports
  config = tiny_config(num_steps=60, log_every=3, checkpoint_every=3)
  full = loop.train(config, tmp_path / "full", split, progress=False)
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
  proc = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(tmp_path / "cut")], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  ckpts = tmp_path / "cut" / "checkpoints"
  give_up = time.monotonic() + 1800  # Only against a hung child; a slow machine just waits longer.
  while time.monotonic() < give_up and proc.poll() is None and not (ckpts.exists() and any(p.name.isdigit() and int(p.name) >= 9
                                                             for p in ckpts.iterdir())):
    time.sleep(0.02)
  assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  resumed = loop.train(config, tmp_path / "cut", split, progress=False)
  assert int(resumed.step) == int(full.step) == 60
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(full.params), jax.device_get(resumed.params))
