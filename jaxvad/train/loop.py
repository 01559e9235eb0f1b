"""The unsupervised training loop: data -> jitted sharded steps -> metrics and checkpoints."""

from __future__ import annotations

import functools
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import tqdm
from tqdm.contrib import logging as tqdm_logging

from jaxvad import models
from jaxvad import run_record
from jaxvad.data.types import Split
from jaxvad.data.windows import WindowSource
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import distributed
from jaxvad.train import health
from jaxvad.train import mesh as mesh_lib
from jaxvad.train import state as state_lib
from jaxvad.train import step as step_lib
from jaxvad.train.metrics_log import MetricsWriter, ScalarWriter
from jaxvad.utils import atomic_write_json

log = logging.getLogger(__name__)


def num_train_steps(config, source: WindowSource) -> int:
  """``train.num_steps`` if set (> 0), else ``train.num_epochs`` epochs of the window source."""
  if config.train.get("num_steps", 0):
    return int(config.train.num_steps)
  return int(config.train.num_epochs * source.steps_per_epoch(config.train.batch_size))


def log_interval(log_every: int, total: int) -> int:
  """``log_every``, scaled down to ``total // 10`` for a run of 10 steps or more too short for two log windows.

  E.g. ``train.num_steps=50`` with the default ``log_every=50`` logs every 5 steps instead of once at the
  end; a ``log_every`` that fits the run at least twice is kept as set.
  """
  log_every, total = max(1, int(log_every)), int(total)
  if total >= 10 and total < 2 * log_every:
    return total // 10
  return log_every


def format_metrics(step: int, total: int, mean: dict) -> str:
  """``"step 30/100: loss 0.01234, grad_norm 0.5, steps_per_s 12.3"``: the metrics line of a log window."""
  keys = sorted(mean, key=lambda k: (k != "loss" and k != "meta_loss", k == "steps_per_s", k))  # Loss first.
  return f"step {step}/{total}: " + ", ".join(f"{k} {mean[k]:.4g}" for k in keys)


def create_train_state(config, mesh, image_size: tuple[int, int]):
  """Builds the model and a replicated, freshly initialised train state on the mesh."""
  mdef = models.build(config.model)
  tx = state_lib.make_optimizer(config.optim)
  h, w = image_size
  sample = jnp.zeros((1, config.data.t, h, w, 3), jnp.float32)  # [1, T, H, W, 3]
  init = jax.jit(functools.partial(state_lib.init_state, mdef.module, tx),
                 out_shardings=mesh_lib.replicated(mesh))
  state = init(jax.random.PRNGKey(config.seed), sample)
  return mdef, tx, state


class TrainInterrupted(Exception):
  """Raised by ``stop_after`` (used by tests and to simulate pre-emption)."""


def train(config, workdir: str | pathlib.Path, split: Split, *, stop_after: int | None = None,
          progress: bool = True):
  """Trains ``config.model`` on the windows of ``split``; resumes from ``workdir`` automatically.

  Args:
    config: the experiment ConfigDict (``data``, ``model``, ``optim``, ``train``, ``seed``).
    workdir: output folder: ``checkpoints/``, ``metrics.jsonl``, ``config.json``.
    split: the training videos.
    stop_after: stop (after saving) once this step is reached, raising
      `TrainInterrupted`; simulates a pre-empted job.
    progress: show a progress bar.
  Returns: the final `TrainState` (replicated on the mesh).

  In a multi-process job (`jaxvad.train.distributed.initialize` called first) every process runs this
  function on the same split and a ``workdir`` on a shared file system: each reads only its rows of
  every batch, all of them save checkpoints (orbax coordinates the writes), and only process 0 writes
  ``config.json``, the metrics and ``train_done.json`` and shows progress.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  main = distributed.is_main_process()
  run_record.check(workdir, config)  # A changed field that matters is refused; config.json is written after restore.
  source = WindowSource(split, t=config.data.t)
  batch_size = config.train.batch_size
  mesh = mesh_lib.make_mesh(config.get("num_devices", None))
  rows = distributed.local_rows(mesh, batch_size)  # None: this process reads whole batches
  mdef, tx, state = create_train_state(config, mesh, split.videos[0].frames.shape[1:3])
  n_params = state_lib.count_params(state.params)

  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints", max_to_keep=config.train.get("keep_checkpoints", 2))
  restored = ckpt.restore(state)
  if restored is not None:
    state = restored
  if main:  # Only now: a failed restore (another model) must not overwrite the record of the checkpoints.
    (workdir / "train_done.json").unlink(missing_ok=True)
    run_record.write(workdir, config)
  start = int(state.step)
  total = num_train_steps(config, source)
  log.info("model %s: %d parameters; %d windows; steps %d -> %d on %d device(s) in %d process(es)",
           config.model.name, n_params, len(source), start, total, mesh.devices.size, jax.process_count())

  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model), mesh)
  rng = jax.random.PRNGKey(config.seed + 1)
  writer = MetricsWriter(workdir / "metrics.jsonl", resume_step=start) if main else None
  scalars = ScalarWriter(workdir / "tb", resume_step=start) if main else None
  log_every = log_interval(config.train.get("log_every", 50), total)
  ckpt_every = config.train.get("checkpoint_every", 500)
  pending = health.PendingMetrics(
      lambda: ckpt.latest_step, str(ckpt.directory),
      f"lower optim.learning_rate (now {config.optim.learning_rate:g}) or set optim.grad_clip, or check the data")
  monitor = health.HealthMonitor(mdef.health_fn, config.model)
  bar = tqdm.tqdm(total=total, initial=start, disable=not (progress and main), desc="train", unit="step",
                  dynamic_ncols=True)
  t_last, steps_since = time.perf_counter(), 0
  try:
    with tqdm_logging.logging_redirect_tqdm():  # Log lines above the progress bar, not through it.
      for step, batch in source.iterate(start, total - start, batch_size, config.seed, rows=rows):
        state, metrics = train_step(state, mesh_lib.shard_batch(batch, mesh, batch_size), rng)
        steps_since += 1
        done = step + 1
        pending.add(done, metrics)
        if done % log_every == 0 or done == total:
          mean = pending.window_mean()  # Raises NonFiniteError on a bad step of the window.
          elapsed = time.perf_counter() - t_last
          mean["steps_per_s"] = steps_since / max(elapsed, 1e-9)
          t_last, steps_since = time.perf_counter(), 0
          if main:
            warnings = monitor(done, mean)
            log.info("%s", format_metrics(done, total, mean))
            writer.write(done, mean, warnings)
            scalars.write(done, mean)
          bar.set_postfix(loss=f"{mean['loss']:.4g}")
        bar.update(1)
        if done % ckpt_every == 0 or done == total or done == stop_after:
          pending.check()  # A non-finite state is never saved.
          ckpt.save(done, state)
        if stop_after is not None and done >= stop_after and done < total:
          ckpt.wait()
          raise TrainInterrupted(f"stopped after step {done} of {total}")
  finally:
    bar.close()
    ckpt.close()
    if scalars is not None:
      scalars.close()
  if main:
    atomic_write_json(workdir / "train_done.json", {"step": int(state.step), "params": n_params})
  return state
