"""Meta-learners and adapted sets: memory of second order (with / without remat), step time, adaptation latency.

Writes experiments/results/meta_learners.json (docs/meta.md, "Meta-learners and what adapts"):

- "memory": XLA's compiled ``memory_analysis()`` of the jitted Meta-SGD meta step (second order, ``jax.grad``
  through the inner steps; T = 1 also in closed form) for inner_steps 1 / 3 / 5, with and without
  rematerialising each inner step (``meta.remat``): temp (scratch) bytes, plus first-order for comparison;
- "learners": per ``meta.learner`` (T = 1) the step's temp bytes and median step time;
- "adapted": per ``meta.adapted`` set the parameter count of theta, the K = 1 test-time adaptation latency
  (one inner step, jitted) and the Meta-SGD meta step's temp bytes and time (2 episodes, K = Q = 1) on a 64x64,
  width 0.25 MPN.

``--sections adapted`` (or any subset) re-measures those sections and keeps the others from ``--out``.

  PYTHONPATH=. python experiments/meta_learners_bench.py            # ~2-3 min on a loaded 2-core CPU
  PYTHONPATH=. python experiments/meta_learners_bench.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
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
SECTIONS = ("memory", "learners", "adapted")  # The JSON's sections, each one loop below.
sys.path.insert(0, str(REPO))

from jaxvad import config_lib, models  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.meta import core, learners  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.meta import step as step_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.utils import atomic_write_json  # noqa: E402  pylint: disable=wrong-import-position


def problem(size: int, width: float, episodes: int, adapted: str = "dpu_head"):
  """(task_loss, params, theta, frozen, episodes) of a random MPN at ``size`` x ``size``, ``width``."""
  config = config_lib.load_config("configs/mpn.py:quick")
  config.model.update(width=width)
  t = config.data.t
  mdef = models.build(config.model)
  params = jax.jit(mdef.module.init)(jax.random.key(0, impl="unsafe_rbg"), jnp.zeros((1, t, size, size, 3)))
  params = params["params"]
  theta, frozen = core.split_params(params, adapted)
  rng = np.random.default_rng(0)
  eps = {"support": jnp.asarray(rng.uniform(-1, 1, (episodes, 1, t + 1, size, size, 3)), jnp.float32),
         "query": jnp.asarray(rng.uniform(-1, 1, (episodes, 1, t + 1, size, size, 3)), jnp.float32)}
  return core.make_task_loss(mdef.module, mdef.loss_fn, config.model), params, theta, frozen, eps


def compiled_step(task_loss, theta, frozen, episodes, **kw):
  """(compiled jitted meta step, its initial state, compile seconds)."""
  tx = step_lib.make_meta_optimizer(1e-5)
  spec = learners.get(kw.get("learner", "meta_sgd"), kw.get("first_order", False))
  state = step_lib.init_meta_state(theta, learners.init_alpha(spec, theta, 1e-2), tx)
  t0 = time.perf_counter()
  compiled = jax.jit(step_lib.make_meta_step(task_loss, tx, **kw)).lower(state, frozen, episodes).compile()
  return compiled, state, time.perf_counter() - t0


def memory(compiled) -> dict:
  m = compiled.memory_analysis()
  return {"temp_bytes": int(m.temp_size_in_bytes), "argument_bytes": int(m.argument_size_in_bytes),
          "output_bytes": int(m.output_size_in_bytes)}


def median_time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny smoke run")
  parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "meta_learners.json"))
  parser.add_argument("--sections", default=",".join(SECTIONS),
                      help="comma-separated subset of memory,learners,adapted; the others are kept from --out")
  args = parser.parse_args(argv)
  sections = [x for x in args.sections.split(",") if x]
  if not sections or set(sections) - set(SECTIONS):
    raise SystemExit(f"error: --sections takes a subset of {','.join(SECTIONS)}, got {args.sections!r}")
  mem_size, mem_width = (16, 0.0625) if args.quick else (32, 0.125)
  ad_size, ad_width = (16, 0.0625) if args.quick else (64, 0.25)
  steps_list = (1, 3) if args.quick else (1, 3, 5)
  repeats = 2 if args.quick else 3
  episodes = 2
  old = json.loads(pathlib.Path(args.out).read_text()) if pathlib.Path(args.out).exists() else {}
  out = {name: ({} if name in sections else old.get(name, {})) for name in SECTIONS}
  out["setup"] = old.get("setup", {})
  start = time.perf_counter()

  task_loss, _, theta, frozen, eps = problem(mem_size, mem_width, episodes)
  for n in (steps_list if "memory" in sections else ()):
    rows = {"second_order": dict(hessian="reverse"), "second_order_remat": dict(hessian="reverse", remat=True),
            "first_order": dict(first_order=True)}
    if n == 1:
      rows["second_order_closed_form"] = dict(hessian="forward")
    for name, kw in rows.items():
      compiled, state, secs = compiled_step(task_loss, theta, frozen, eps, inner_steps=n, **kw)
      med = median_time(lambda compiled=compiled, state=state: compiled(state, frozen, eps)[1], repeats)
      out["memory"][f"{name}_T{n}"] = {**memory(compiled), "inner_steps": n, "median_step_s": med,
                                       "compile_s": round(secs, 2)}
      print(f"memory {name:26s} T={n}: temp {out['memory'][f'{name}_T{n}']['temp_bytes'] / 2**20:8.2f} MiB, "
            f"step {med * 1e3:7.1f} ms", flush=True)

  for name in (learners.LEARNERS if "learners" in sections else ()):
    compiled, state, secs = compiled_step(task_loss, theta, frozen, eps, learner=name)
    holder = [state]

    def run(compiled=compiled, holder=holder):
      holder[0], metrics = compiled(holder[0], frozen, eps)
      return metrics

    med = median_time(run, repeats)
    out["learners"][name] = {**memory(compiled), "median_step_s": med, "compile_s": round(secs, 2)}
    print(f"learner {name:10s}: temp {out['learners'][name]['temp_bytes'] / 2**20:7.2f} MiB, "
          f"step {med * 1e3:7.1f} ms", flush=True)

  task_loss, params, _, _, eps = problem(ad_size, ad_width, episodes)
  total = sum(x.size for x in jax.tree.leaves(params))
  support = eps["support"][0]  # [K=1, T+1, H, W, 3]
  for adapted in (core.ADAPTED_SETS if "adapted" in sections else ()):
    theta, frozen = core.split_params(params, adapted)
    alpha = core.init_alpha(theta, 1e-2)
    fn = jax.jit(lambda th, al, fr, s: core.adapt(task_loss, th, al, fr, s))
    med = median_time(lambda fn=fn, theta=theta, alpha=alpha, frozen=frozen: fn(theta, alpha, frozen, support),
                      repeats * 3)
    n = sum(x.size for x in jax.tree.leaves(theta))
    # The Meta-SGD meta step (second order, closed form) with this set adapting, same model and episodes.
    compiled, state, secs = compiled_step(task_loss, theta, frozen, eps)
    holder = [state]

    def meta_run(compiled=compiled, holder=holder, frozen=frozen):
      holder[0], metrics = compiled(holder[0], frozen, eps)
      return metrics

    step = median_time(meta_run, repeats)
    out["adapted"][adapted] = {"parts": list(theta), "params": int(n), "fraction": n / total,
                               "adapt_k1_median_s": med, "meta_step_temp_bytes": memory(compiled)["temp_bytes"],
                               "meta_step_median_s": step, "meta_step_compile_s": round(secs, 2)}
    print(f"adapted {adapted:17s}: {n:7d} params ({100 * n / total:5.1f}%), K=1 adaptation {med * 1e3:6.1f} ms, "
          f"meta step {step * 1e3:6.1f} ms, temp {out['adapted'][adapted]['meta_step_temp_bytes'] / 2**20:7.2f} MiB",
          flush=True)

  # Each section keeps the conditions it was measured under (a rerun of one section keeps the others').
  when = {"load_average": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
          "quick": args.quick}
  by_section = {**out["setup"].get("by_section", {}), **{name: when for name in sections}}
  out["setup"] = {
      **out["setup"], "sections_last_run": sections, "by_section": by_section,
      "quick": args.quick, "memory_and_learners": {"size": [mem_size, mem_size], "width": mem_width,
                                                   "episodes": episodes, "k": 1, "q": 1, "batching": "unroll"},
      "adapted": {"size": [ad_size, ad_size], "width": ad_width, "k": 1, "inner_steps": 1, "total_params": int(total),
                  "meta_step": f"meta_sgd, second order, {episodes} episodes, K = Q = 1"},
      "model": "configs/mpn.py:quick (M = 10, t = 4)", "repeats": repeats, "devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
      "load_average": list(os.getloadavg()), "wall_s": round(time.perf_counter() - start, 1),
      "note": "temp_bytes: XLA's scratch memory of the compiled step (memory_analysis); times on a shared CPU"}
  atomic_write_json(args.out, out, indent=2)
  print(f"wrote {args.out} ({out['setup']['wall_s']} s)")
  return out


if __name__ == "__main__":
  main()
