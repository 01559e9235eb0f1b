"""CPU timings of the Meta-SGD outer step (MPN's MPU, paper Eq. 9-11) and of K-shot adaptation.

Times (jit, after warm-up, median of repeats) `jaxvad.meta.step.make_meta_step` on a meta-batch of
E = 4 episodes (K = 1 support, Q = 1 query window each) with the ``configs/mpn.py:quick`` model
(64x64, width 0.25, M = 10, t = 4), for second- vs first-order outer gradients and for ``vmap`` vs
``unroll`` vs ``map`` batching over episodes, plus the test-time K = 1 adaptation (one inner step,
`jaxvad.meta.core.adapt`). The data are random windows: the timings do not depend on their values.

Usage:
  .venv/bin/python experiments/meta_bench.py [--quick] [--out experiments/results/meta_bench.json]

``--quick`` is a smoke run (16x16, width 0.0625, M = 3, 2 repeats) that checks the script end to end.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxvad import config_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad import models  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.meta import core  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.meta import step as step_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import mesh as mesh_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import step as train_step_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.utils import atomic_write_json  # noqa: E402  pylint: disable=wrong-import-position


BATCHINGS = ("vmap", "unroll", "map")


def _time(fn, repeats: int) -> tuple[float, float, list[float]]:
  """(first call incl. compile, median of ``repeats`` later calls, all later times), seconds."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, statistics.median(times), times


def make_meta_problem(config, size: tuple[int, int], episodes: int, k: int = 1, q: int = 1,
                      mesh=None) -> dict:
  """Random MPN parameters and episodes for timing the meta step and adaptation at ``config.model``.

  Args:
    config: an MPN experiment config (``model``, ``data.t``).
    size: (H, W) of the windows.
    episodes: E, the meta-batch size.
    k: support windows per episode.
    q: query windows per episode.
    mesh: where the episodes go (default: one device).

  Returns:
    {"task_loss", "theta", "alpha", "frozen", "mesh", "episodes": {"support": [E, K, T+1, H, W, 3],
    "query": [E, Q, T+1, H, W, 3]} sharded over the mesh}.
  """
  t, size = config.data.t, tuple(size)
  mesh = mesh or mesh_lib.make_mesh(1)
  mdef = models.build(config.model)
  key = jax.random.key(0, impl="unsafe_rbg")  # Fast to compile on CPU; values are irrelevant here.
  params = jax.jit(mdef.module.init)(key, jnp.zeros((1, t) + size + (3,)))["params"]
  theta, frozen = core.split_params(params)
  rng = np.random.default_rng(0)
  eps = {"support": rng.uniform(-1, 1, (episodes, k, t + 1) + size + (3,)).astype(np.float32),
         "query": rng.uniform(-1, 1, (episodes, q, t + 1) + size + (3,)).astype(np.float32)}
  return {"task_loss": core.make_task_loss(mdef.module, mdef.loss_fn, config.model), "theta": theta,
          "alpha": core.init_alpha(theta, 1e-6), "frozen": frozen, "mesh": mesh,
          "episodes": mesh_lib.shard_batch(eps, mesh)}


def make_adapt_fn(task_loss, frame_hw=None):
  """Jitted test-time adaptation ``(theta, alpha, frozen, support [K, T+1, H, W, 3]) -> theta_hat``, compiled as
  `fewshot.Adapter` compiles it for ``frame_hw`` (CPU compiler options by frame size)."""
  return jax.jit(lambda th, al, fr, s: core.adapt(task_loss, th, al, fr, s),
                 compiler_options=train_step_lib.cpu_meta_compiler_options(frame_hw))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny smoke run")
  parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "meta_bench.json"))
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--episodes", type=int, default=4)
  args = parser.parse_args(argv)

  config = config_lib.load_config("configs/mpn.py:quick")
  size, t = tuple(config.data.size), config.data.t
  if args.quick:
    config.model.update(width=0.0625, num_prototypes=3)
    size = (16, 16)
  repeats = args.repeats or (2 if args.quick else 5)
  e, k, q = args.episodes, 1, 1

  problem = make_meta_problem(config, size, e, k, q)
  task_loss, theta, alpha, frozen = (problem[n] for n in ("task_loss", "theta", "alpha", "frozen"))
  episodes, mesh = problem["episodes"], problem["mesh"]
  tx = step_lib.make_meta_optimizer(1e-5)

  results = {"meta_step": {}}
  for order in ("second", "first"):
    for batching in BATCHINGS:
      meta_step = step_lib.make_meta_step(task_loss, tx, inner_steps=1, first_order=order == "first",
                                          batching=batching)
      fn = step_lib.jit_meta_step(meta_step, mesh, frame_hw=tuple(size))
      holder = [jax.device_put(step_lib.init_meta_state(theta, alpha, tx), mesh_lib.replicated(mesh))]

      def run(fn=fn, holder=holder):
        holder[0], metrics = fn(holder[0], frozen, episodes)
        return metrics

      first, median, times = _time(run, repeats)
      name = f"{order}_order_{batching}"
      results["meta_step"][name] = {"first_call_s": first, "median_s": median, "times_s": times,
                                    "compiles": fn._cache_size()}
      print(f"meta step {name:22s} median {median * 1e3:8.1f} ms  (first call {first:.1f} s)", flush=True)

  support = jnp.asarray(episodes["support"][0])  # [K, T+1, H, W, 3]
  adapt_fn = make_adapt_fn(task_loss, frame_hw=tuple(size))
  first, median, times = _time(lambda: adapt_fn(theta, alpha, frozen, support), repeats)
  results["adapt_k1"] = {"first_call_s": first, "median_s": median, "times_s": times}
  print(f"adapt K=1 median {median * 1e3:.1f} ms (first call {first:.1f} s)", flush=True)

  steps = results["meta_step"]
  results["faster_batching"] = {
      order: min(BATCHINGS, key=lambda b, o=order: steps[f"{o}_order_{b}"]["median_s"])
      for order in ("second", "first")}
  results["setup"] = {
      "quick": args.quick, "config": "configs/mpn.py:quick", "size": list(size), "t": t,
      "width": config.model.width, "num_prototypes": config.model.num_prototypes, "episodes": e, "k": k,
      "q": q, "inner_steps": 1, "repeats": repeats, "devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
      "load_average": list(os.getloadavg()),
      "note": "shared CPU (a training run on the same cores): absolute times are noisy, compare ratios"}
  atomic_write_json(args.out, results)
  print(f"wrote {args.out}")
  return results


if __name__ == "__main__":
  main()
