"""One command that measures jaxvad's speed and writes one JSON (issue 7, item 1).

Measures, after compile and warm-up, medians over repeats:
  inference   frames/s of `jaxvad.pipeline.make_predict_fn` for MPN and PGM, batch 1 and a large batch
  train       seconds per training step (`jaxvad.train.step.jit_train_step`, Adam, state donated)
  meta        MPN's Meta-SGD outer step, second vs first order (E episodes, K = Q = 1; and the official code's
              shape, E = 1, K = Q = 2), and the latency of
              K = 1 test-time adaptation (jitted `jaxvad.meta.core.adapt`)
  loader      windows/s of `WindowSource.iterate` (via `experiments/loader_bench.py`)
at three model sizes: "cpu" (``configs/<model>.py:quick``: 64x64, width 0.25), "paper"
(``configs/<model>.py:ped2``: 256x256, width 1.0) and "paper@64" (the paper width 1.0 at a 64x64 input).
Each row also has compile time and peak memory (device peak where the backend reports it, else the
process max RSS). The JSON also holds versions, device, CPU model and flags, environment and git commit.

Only jaxvad's own figures: ratios to the official PyTorch code come only from
``experiments/side_by_side.py``, which times both on the same machine in one run (issue 16).

Usage:
  .venv/bin/python experiments/bench.py --quick            # CPU: a few minutes
  .venv/bin/python experiments/bench.py                    # everything (GPU: unchanged command)
  .venv/bin/python experiments/bench.py --only meta,train --dtype bfloat16 --threads 2
  .venv/bin/python experiments/bench.py --conv xla --hessian reverse --out before.json   # fast paths off

Results: ``experiments/results/bench_<backend>[_bfloat16][_quick].json`` unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("inference", "train", "meta", "loader")
# label -> (config variant, image size override or None).
CONFIGS = {"cpu": ("quick", None), "paper": ("ped2", None), "paper@64": ("ped2", 64)}


def make_plan(quick: bool, backend: str, sections: list[str], episodes: int) -> list[dict]:
  """The rows to measure: dicts with section, model, config label and batch / order."""
  large = [8] if backend == "cpu" else [32, 64]
  paper_batches = [1] if quick else [1, *large]
  rows = []
  if "inference" in sections:
    for model in ("mpn", "pgm"):
      rows += [dict(section="inference", model=model, config="cpu", batch=b) for b in (1, 32)]
      rows += [dict(section="inference", model=model, config="paper", batch=b) for b in paper_batches]
    rows += [dict(section="inference", model="mpn", config="paper@64", batch=b)
             for b in ([1] if quick else [1, 32])]
  if "train" in sections:
    for model in ("mpn", "pgm"):
      rows.append(dict(section="train", model=model, config="cpu", batch=8))
      if not quick:
        rows.append(dict(section="train", model=model, config="paper", batch=4))
    if not quick:
      rows.append(dict(section="train", model="mpn", config="paper@64", batch=4))
  if "meta" in sections:
    for config in ["cpu", "paper@64"] if quick else ["cpu", "paper@64", "paper"]:
      for order in ("second", "first"):
        rows.append(dict(section="meta_step", model="mpn", config=config, episodes=episodes, k=1, q=1,
                         order=order))
      if config != "cpu":  # The official Train_meta.py's meta step: one episode of task_size 4 = 2 support + 2 query.
        rows.append(dict(section="meta_step", model="mpn", config=config, episodes=1, k=2, q=2,
                         order="second", reference_shape=True))
      rows.append(dict(section="adapt_k1", model="mpn", config=config, batch=1))
  return rows


def run_row(lib, spec: dict, dtype: str, timing: dict, conv: str | None = None, hessian: str = "forward") -> dict:
  """Measures one planned row; errors are recorded in the row, not raised."""
  variant, size = CONFIGS[spec["config"]]
  row = dict(spec, dtype=dtype, config_file=f"configs/{spec['model']}.py:{variant}")
  t0 = time.perf_counter()
  try:
    config = lib.load_config(spec["model"], variant, size, dtype, conv=conv)
    row.update(image_size=list(config.data.size), width=config.model.width, t=config.data.t,
               conv=config.model.get("conv", "xla"))
    section = spec["section"]
    if section == "inference":
      row.update(lib.bench_inference(config, spec["batch"], **timing))
    elif section == "train":
      row.update(lib.bench_train_step(config, spec["batch"], **timing))
    elif section == "meta_step":
      row.update(inner_steps=1, hessian=hessian)
      row.update(lib.bench_meta_step(config, spec["episodes"], spec["order"] == "first", k=spec["k"],
                                     q=spec["q"], hessian=hessian, **timing))
    elif section == "adapt_k1":
      row.update(lib.bench_adapt(config, **timing))
  except Exception as e:  # pylint: disable=broad-except
    row["error"] = f"{type(e).__name__}: {e}"
    row["traceback"] = traceback.format_exc(limit=4)
  row["peak_memory"] = lib.peak_memory()
  row["row_wall_s"] = time.perf_counter() - t0
  return row


def measure(lib, plan: list[dict], dtype: str, timing: dict, skipped: dict, start: float, **options) -> list[dict]:
  """Runs the planned rows in order (rows of a model in ``skipped`` carry the reason instead)."""
  rows = []
  for spec in plan:
    if spec["model"] in skipped:
      rows.append(dict(spec, dtype=dtype, skipped=skipped[spec["model"]]))
      continue
    r = run_row(lib, spec, dtype, timing, **options)
    rows.append(r)
    what = {k: spec[k] for k in ("batch", "episodes", "k", "q", "order") if k in spec}
    result = r["error"] if "error" in r else f"median {r['median_s'] * 1e3:.1f} ms, compile {r['compile_s']:.1f} s"
    print(f"[{time.perf_counter() - start:6.0f} s] {spec['section']:9s} {spec['model']} {spec['config']:8s} "
          f"{what} {result}", flush=True)
  return rows


def skip_reason(lib, model: str) -> str | None:
  """Why ``model`` cannot be benchmarked (its ``models.build`` fails), or None."""
  from jaxvad import models  # pylint: disable=import-outside-toplevel
  try:
    models.build(lib.load_config(model, "quick", None, "float32").model)
  except Exception as e:  # pylint: disable=broad-except
    return f"models.build failed: {type(e).__name__}: {e}"
  return None


def summary_table(rows: list[dict]) -> str:
  """A markdown table of the rows: what, time or rate, compile time."""
  lines = ["| section | model | config | size | batch | dtype | median | rate | compile s |",
           "|---|---|---|---|---:|---|---:|---:|---:|"]
  for r in rows:
    size = r.get("image_size", "-")
    size = "x".join(map(str, size)) if isinstance(size, list) else size if size == "-" else f"{size}x{size}"
    batch = r.get("batch", r.get("episodes", "-"))
    what = r["section"] + (f" ({r['order']}, E={r['episodes']}, K={r['k']}, Q={r['q']})" if "order" in r else "")
    if "error" in r or "skipped" in r:
      lines.append(f"| {what} | {r.get('model', '-')} | {r.get('config', '-')} | {size} | {batch} | "
                   f"{r.get('dtype', '-')} | {r.get('error', r.get('skipped'))[:60]} | | |")
      continue
    rate = (f"{r['frames_per_s']:.1f} frames/s" if "frames_per_s" in r else
            f"{r['windows_per_s']:.0f} windows/s" if "windows_per_s" in r else "")
    median = f"{r['median_s'] * 1e3:.1f} ms" if "median_s" in r else "-"
    compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
    config = r.get("config", "-") + (f" ({r['conv']})" if "conv" in r else "")
    lines.append(f"| {what} | {r.get('model', '-')} | {config} | {size} | {batch} | "
                 f"{r.get('dtype', '-')} | {median} | {rate} | {compile_s} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="CPU configs, plus paper-config inference at batch 1; few repeats (minutes on CPU)")
  parser.add_argument("--out", default=None,
                      help="default experiments/results/bench_<backend>[_<dtype>][_quick].json")
  parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="model compute dtype (config model.dtype); parameters stay float32")
  parser.add_argument("--threads", type=int, default=None,
                      help="pin the process to this many CPUs before JAX starts (XLA:CPU sizes its thread pool "
                           "from them)")
  parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 3 quick, 10 full)")
  parser.add_argument("--episodes", type=int, default=None, help="meta-batch size E (default 4 quick, 10 full)")
  parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {tuple(CONFIGS)}")
  parser.add_argument("--conv", default=None, choices=("xla", "im2col", "auto"),
                      help="convolution implementation for every row (config model.conv; default: each config's)")
  parser.add_argument("--hessian", default="forward", choices=("forward", "reverse"),
                      help="meta-step outer gradient (`jaxvad.meta.step.make_meta_step`): forward-over-reverse "
                           "closed form (default) or reverse over reverse, the plain jax.grad path")
  args = parser.parse_args(argv)
  sections = [s.strip() for s in args.only.split(",") if s.strip()]
  configs = [c.strip() for c in args.configs.split(",") if c.strip()]
  unknown = (set(sections) - set(SECTIONS)) | (set(configs) - set(CONFIGS))
  if unknown:
    parser.error(f"unknown {sorted(unknown)}; sections: {SECTIONS}, configs: {tuple(CONFIGS)}")
  if args.threads:  # Before JAX creates its backend (and thread pools), hence the late import below.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
  sys.path.insert(0, str(REPO))
  from experiments import bench_lib as lib  # pylint: disable=import-outside-toplevel
  from jaxvad.utils import atomic_write_json  # pylint: disable=import-outside-toplevel

  # Parameter values do not matter here, and threefry initialisation of a whole model compiles ~4x
  # slower on CPU than "unsafe_rbg"; the measured steps draw no random numbers.
  lib.jax.config.update("jax_default_prng_impl", "unsafe_rbg")
  start = time.perf_counter()
  env = lib.environment()
  backend = env["backend"]
  timing = dict(repeats=args.repeats or (3 if args.quick else 10), warmup=1 if args.quick else 2,
                budget_s=10.0 if args.quick else 60.0)
  episodes = args.episodes or (4 if args.quick else 10)
  out = pathlib.Path(args.out or REPO / "experiments" / "results" / (
      f"bench_{backend}" + ("" if args.dtype == "float32" else f"_{args.dtype}")
      + ("_quick" if args.quick else "") + ".json"))
  skipped = {m: r for m in ("mpn", "pgm") if (r := skip_reason(lib, m))}
  plan = [s for s in make_plan(args.quick, backend, sections, episodes) if s["config"] in configs]
  rows = measure(lib, plan, args.dtype, timing, skipped, start, conv=args.conv, hessian=args.hessian)
  if "loader" in sections:
    sizes = [64] if args.quick else [64, 256]
    for size in sizes:
      rows += lib.bench_loader(size, [4, 32], repeats=timing["repeats"],
                               windows_per_repeat=1024 if args.quick else 2048,
                               num_frames=400 if args.quick else 2000)
    print(f"[{time.perf_counter() - start:6.0f} s] loader done", flush=True)
  report = {
      "what": __doc__.splitlines()[0], "quick": args.quick, "dtype": args.dtype, "sections": sections,
      "configs_run": configs, "conv": args.conv or "per config", "hessian": args.hessian,
      "threads": args.threads, "timing": timing, "prng_impl": "unsafe_rbg", "environment": env,
      "configs": {k: {"variant": v, "size_override": s} for k, (v, s) in CONFIGS.items()},
      "notes": ["peak_memory is a high-water mark over the process so far (rows run in order), not per row",
                "compile_s: lower().compile() for jitted functions; for the predict fn (a wrapper) the first "
                "call, compile plus one run",
                "no PyTorch figures here: experiments/side_by_side.py times both sides on one machine"],
      "skipped_models": skipped, "rows": rows,
      "load_average_at_end": list(os.getloadavg()), "total_wall_s": time.perf_counter() - start,
  }
  atomic_write_json(out, report, indent=2)
  print(summary_table(rows))
  print(f"wrote {out} in {report['total_wall_s']:.0f} s")
  return report


if __name__ == "__main__":
  main()
