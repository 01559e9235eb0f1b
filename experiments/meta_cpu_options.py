"""Does the CPU train-step compiler option also speed up the meta step and K = 1 adaptation? (issue 16)

Compiles the second-order Meta-SGD step (paper width MPN, `configs/mpn.py:ped2` at ``--size``, one episode of
K = Q = 2) and K = 1 adaptation (`meta.core.adapt`) twice in ONE process: the default program and one with
`jaxvad.train.step.CPU_TRAIN_COMPILER_OPTIONS`; times them interleaved (``--rounds`` calls each, alternating, the
same state), reports the medians, their ratio and the largest difference of the outputs. This is how
`CPU_META_MIN_PIXELS` was chosen (the library applies the option from that frame size up).

Usage:
  python experiments/meta_cpu_options.py --size 256 --rounds 4 --out experiments/results/meta_cpu_options_256.json
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from experiments import bench_lib, meta_bench  # noqa: E402
from jaxvad.meta import core  # noqa: E402
from jaxvad.meta import step as meta_step_lib  # noqa: E402
from jaxvad.train import mesh as mesh_lib  # noqa: E402
from jaxvad.train import step as step_lib  # noqa: E402
from jaxvad.utils import atomic_write_json  # noqa: E402

VARIANTS = (("default", None), ("option", dict(step_lib.CPU_TRAIN_COMPILER_OPTIONS)))


def _interleaved(calls: dict, rounds: int) -> dict:
  times = {n: [] for n in calls}
  for _ in range(rounds):
    for n, call in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(call())
      times[n].append(time.perf_counter() - t0)
  out = {n: statistics.median(v) for n, v in times.items()}
  return {**out, "speedup": out["default"] / out["option"], "samples": times}


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a),
                                                                                    jax.tree.leaves(b)))


def meta_step(config, rounds: int) -> dict:
  problem = meta_bench.make_meta_problem(config, tuple(config.data.size), 1, k=2, q=2)
  tx = meta_step_lib.make_meta_optimizer(1e-5)
  fn = meta_step_lib.make_meta_step(problem["task_loss"], tx, first_order=False, batching="unroll",
                                    hessian="forward")
  rep, batch = mesh_lib.replicated(problem["mesh"]), mesh_lib.batch_sharding(problem["mesh"])
  state = jax.device_put(meta_step_lib.init_meta_state(problem["theta"], problem["alpha"], tx), rep)
  args = (state, problem["frozen"], problem["episodes"])
  compiled = {n: jax.jit(fn, in_shardings=(rep, rep, batch), out_shardings=(rep, rep),
                         compiler_options=o).lower(*args).compile() for n, o in VARIANTS}
  outs = {n: c(*args)[1] for n, c in compiled.items()}
  res = _interleaved({n: (lambda c=c: c(*args)) for n, c in compiled.items()}, rounds)
  return {**res, "max_metric_diff": _max_diff(outs["default"], outs["option"])}


def adaptation(config, rounds: int) -> dict:
  problem = meta_bench.make_meta_problem(config, tuple(config.data.size), episodes=1)
  args = (problem["theta"], problem["alpha"], problem["frozen"], problem["episodes"]["support"][0])
  fn = lambda th, al, fr, s: core.adapt(problem["task_loss"], th, al, fr, s)  # noqa: E731
  compiled = {n: jax.jit(fn, compiler_options=o).lower(*args).compile() for n, o in VARIANTS}
  outs = {n: c(*args) for n, c in compiled.items()}
  res = _interleaved({n: (lambda c=c: c(*args)) for n, c in compiled.items()}, rounds)
  return {**res, "max_param_diff": _max_diff(outs["default"], outs["option"])}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--size", type=int, default=256)
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--parts", default="meta,adapt")
  ap.add_argument("--out", required=True)
  args = ap.parse_args(argv)
  config = bench_lib.load_config("mpn", "ped2", args.size, "float32")
  out = {"size": args.size, "rounds": args.rounds, "environment": bench_lib.environment(),
         "options": dict(step_lib.CPU_TRAIN_COMPILER_OPTIONS)}
  parts = args.parts.split(",")
  if "meta" in parts:
    out["meta"] = meta_step(config, args.rounds)
    print(f"meta step {args.size}: {out['meta']['default']:.3f} s -> {out['meta']['option']:.3f} s "
          f"({out['meta']['speedup']:.2f}x)", flush=True)
  if "adapt" in parts:
    out["adapt"] = adaptation(config, args.rounds)
    print(f"K=1 adaptation {args.size}: {out['adapt']['default']:.3f} s -> {out['adapt']['option']:.3f} s "
          f"({out['adapt']['speedup']:.2f}x)", flush=True)
  atomic_write_json(pathlib.Path(args.out), out, indent=1)


if __name__ == "__main__":
  main()
