"""Measurement functions behind ``experiments/bench.py``: one per quantity, each returning a JSON-able row.

Every timing goes through `time_fn`: compile (or first call) timed apart, then ``warmup`` untimed calls,
then up to ``repeats`` blocked calls (stopping early once ``budget_s`` is spent), reported as the median.
The data are random: the timings do not depend on their values.
"""

from __future__ import annotations

import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import cpu_info  # noqa: E402  pylint: disable=wrong-import-position
from experiments import loader_bench  # noqa: E402  pylint: disable=wrong-import-position
from experiments import meta_bench  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad import config_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad import pipeline  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.data.windows import WindowSource  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.meta import step as meta_step_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import loop  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import mesh as mesh_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import step as step_lib  # noqa: E402  pylint: disable=wrong-import-position


def time_fn(fn: Callable, *args, repeats: int = 5, warmup: int = 1, budget_s: float | None = None,
            carry: bool = False) -> dict:
  """Median wall time of ``fn(*args)`` (outputs blocked on) after compilation and warm-up.

  Args:
    fn: a ``jax.jit`` function (compiled ahead with ``fn.lower(*args).compile()``, whose time is
      ``compile_s``) or any callable (then ``compile_s`` is the first call, compile + one run).
    *args: its arguments.
    repeats: at most this many timed calls.
    warmup: untimed calls after compilation.
    budget_s: stop timing once this many seconds were spent (at least one timed call is made).
    carry: ``fn`` returns ``(new_args[0], out)`` and consumes ``args[0]`` (a donated train state):
      each call gets the state the previous call returned.

  Returns:
    {"median_s", "min_s", "max_s", "samples_s", "warmup", "repeats", "compile_s", "compile_method"}.
  """
  args = list(args)

  def call(f):
    out = jax.block_until_ready(f(*args))
    if carry:
      args[0], out = out
    return out

  t0 = time.perf_counter()
  if hasattr(fn, "lower"):
    fn, method = fn.lower(*args).compile(), "lower_compile"
  else:
    call(fn)
    method = "first_call"
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    call(fn)
  times = []
  while len(times) < repeats and not (times and budget_s is not None and sum(times) > budget_s):
    t0 = time.perf_counter()
    call(fn)
    times.append(time.perf_counter() - t0)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "samples_s": [round(t, 6) for t in times], "warmup": warmup, "repeats": len(times),
          "compile_s": compile_s, "compile_method": method}


def peak_memory() -> dict:
  """The device's peak bytes where the backend reports it (GPU, TPU), else the process max RSS.

  Both are high-water marks over the whole process so far, not per row.
  """
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return {"kind": "device_peak_bytes_in_use", "bytes": int(stats["peak_bytes_in_use"]),
            "bytes_in_use": int(stats.get("bytes_in_use", 0))}
  rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux.
  return {"kind": "process_max_rss (backend reports no device memory)", "bytes": int(rss_kib) * 1024}


def environment() -> dict:
  """Versions, backend, devices, CPU model and flags, relevant environment variables, time and git commit."""
  import flax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  dev = jax.devices()[0]
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip())
  except (OSError, subprocess.CalledProcessError):
    commit, dirty = None, None
  env = {k: v for k, v in os.environ.items()
         if k in ("XLA_FLAGS", "LD_PRELOAD") or k.startswith(("MALLOC_", "JAX_", "OMP_", "MKL_", "TF_CPP_"))}
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "python": platform.python_version(), "backend": jax.default_backend(), "device_kind": dev.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
          "cpu": cpu_info.cpu_info(),
          "load_average_at_start": list(os.getloadavg()), "platform": platform.platform(), "env": env,
          "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": commit, "git_dirty": dirty}


def load_config(model: str, variant: str, size: int | None, dtype: str, conv: str | None = None):
  """``configs/<model>.py:<variant>`` with the image size (None: the config's), compute dtype and
  convolution implementation (``model.conv``; None: the config's) set."""
  config = config_lib.load_config(f"configs/{model}.py:{variant}")
  if size is not None:
    config.data.size = (size, size)
  config.model.dtype = dtype
  if conv is not None:
    config.model.conv = conv
  return config


def random_windows(config, batch: int, seed: int = 0) -> np.ndarray:
  """Random float32 windows [B, T+1, H, W, 3] in [-1, 1] at the config's size."""
  shape = (batch, config.data.t + 1) + tuple(config.data.size) + (3,)
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def bench_inference(config, batch: int, **timing) -> dict:
  """Frames/s of `pipeline.make_predict_fn` (host windows in, prediction and scores out)."""
  mesh = mesh_lib.make_mesh(1)
  mdef, _, state = loop.create_train_state(config, mesh, tuple(config.data.size))
  variables = {"params": state.params, **state.model_state}
  predict = pipeline.make_predict_fn(mdef, variables, config.model, mesh)
  row = time_fn(predict, random_windows(config, batch), **timing)
  row["frames_per_s"] = batch / row["median_s"]
  return row


def bench_train_step(config, batch: int, **timing) -> dict:
  """Seconds per optimiser step of `step.jit_train_step` (state donated and carried)."""
  mesh = mesh_lib.make_mesh(1)
  mdef, tx, state = loop.create_train_state(config, mesh, tuple(config.data.size))
  step = step_lib.jit_train_step(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model), mesh)
  frames = mesh_lib.shard_batch({"frames": random_windows(config, batch)}, mesh)
  return time_fn(step, state, frames, jax.random.PRNGKey(0), carry=True, **timing)


def bench_meta_step(config, episodes: int, first_order: bool, batching: str = "unroll", k: int = 1, q: int = 1,
                    hessian: str = "forward", **timing) -> dict:
  """Seconds per Meta-SGD outer step (`meta.step.jit_meta_step`): E episodes of K support, Q query windows;
  ``hessian`` as `meta.step.make_meta_step`'s."""
  problem = meta_bench.make_meta_problem(config, tuple(config.data.size), episodes, k=k, q=q)
  tx = meta_step_lib.make_meta_optimizer(1e-5)
  meta_step = meta_step_lib.make_meta_step(problem["task_loss"], tx, first_order=first_order, batching=batching,
                                             hessian=hessian)
  fn = meta_step_lib.jit_meta_step(meta_step, problem["mesh"], frame_hw=tuple(config.data.size))
  state = jax.device_put(meta_step_lib.init_meta_state(problem["theta"], problem["alpha"], tx),
                         mesh_lib.replicated(problem["mesh"]))
  row = time_fn(fn, state, problem["frozen"], problem["episodes"], carry=True, **timing)
  row["batching"] = batching
  return row


def bench_adapt(config, **timing) -> dict:
  """Latency of K = 1 test-time adaptation (jitted `meta.core.adapt`, one inner step, one support window)."""
  problem = meta_bench.make_meta_problem(config, tuple(config.data.size), episodes=1)
  support = problem["episodes"]["support"][0]  # [K=1, T+1, H, W, 3]
  adapt_fn = meta_bench.make_adapt_fn(problem["task_loss"], frame_hw=tuple(config.data.size))
  return time_fn(adapt_fn, problem["theta"], problem["alpha"], problem["frozen"], support, **timing)


def bench_loader(size: int, batches: list[int], repeats: int, windows_per_repeat: int, num_frames: int,
                 prefetch: int = 2) -> list[dict]:
  """Windows/s of `WindowSource.iterate` from a random memmap cache (`experiments/loader_bench.py`)."""
  rows = []
  with tempfile.TemporaryDirectory(prefix="jaxvad_bench_") as tmp:
    split = loader_bench.random_split(pathlib.Path(tmp), size, num_frames)
    src = WindowSource(split, t=loader_bench.T)
    for batch in batches:
      steps = max(2, windows_per_repeat // batch)
      r = loader_bench.time_iterate(src, batch, steps, repeats, prefetch)
      r.update(section="loader", image_size=size, batch=batch, prefetch=prefetch,
               data=f"random_uint8_{num_frames}_frames")
      rows.append(r)
  return rows
