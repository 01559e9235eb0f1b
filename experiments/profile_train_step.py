"""Where one MPN training step's time goes on XLA:CPU, by HLO op category (issue 16, item 2).

Builds the paper-width MPN train step (``configs/mpn.py:ped2``, as ``bench.py``'s "paper"; 13.3M
parameters, Adam, state donated) at ``--size`` and ``--batch``, compiles it, runs ``--warmup`` steps,
then traces ``--steps`` steps with ``jax.profiler``. XLA:CPU emits one trace event per executed HLO op
(thunk) with its ``hlo_op`` name; each is matched to its instruction in the compiled module's HLO text,
which gives its opcode, shapes and jax metadata (``op_name``: the flax module path and whether it is the
forward, ``jvp(...)``, or the backward, ``transpose(jvp(...))``), and is put in one category:

  conv fwd / conv bwd-input / conv bwd-filter   XLA convolutions (split by kernel, stride, map size)
  conv as dot fwd / bwd                         convolutions as matrix products: ``conv="auto"``'s im2col
                                                and the "dwdot" filter gradient (`models.conv_impl`)
  upsample (...)                                the sub-pixel transposed convolutions' convs and dots
  dpu products                                  the DPU's N x M einsums and its 1x1 attention conv
  layout (transpose / copy)                     transposes, copies, bitcast-copies
  pad / slice / concat                          data movement that is neither of the above
  pooling (reduce-window / select-and-scatter)  max-pool and its gradient
  reductions                                    other reductions (losses, norms, finiteness checks)
  optimizer (Adam)                              ops in ``opt_state`` / the update (op_name ``adam``, ...)
  elementwise fusions                           the rest

FLOPs per op are counted from the HLO shapes (2 * output elements * window * input features for a
convolution, 2 * output elements * contracted size for a dot); elementwise FLOPs are not counted. Time
per op is the sum of its events' durations. With Eigen's intra-op threads on (the default) an op's
convolution work can run on pool threads after its event ends, so the default here is
``--xla_cpu_multi_thread_eigen=false`` with one thread (``--threads 1``): every op then runs to the end
inside its own event, and the events add up to the step. ``--multi-thread`` keeps XLA's defaults
(the breakdown is then approximate; the step wall time is still exact).

Usage (one compile of ~1-2 min at 256x256, then the profiled steps):
  PYTHONPATH=$PWD .venv/bin/python experiments/profile_train_step.py --size 256 --batch 4
  PYTHONPATH=$PWD .venv/bin/python experiments/profile_train_step.py --size 64 --batch 4

Results: ``experiments/results/profile_train_step_<size>_b<batch>[_mt].json`` and ``.md`` (table).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# name = shape opcode(  ; shapes may be tuples "(f32[2]{0}, f32[3]{0})".
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\(.*?\)|\S+) ([a-z][a-z0-9\-]*)\((.*)$")
_COMP = re.compile(r"^\s*(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_SHAPE = re.compile(r"([a-z]+\d*)\[([\d,]*)\]")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OPNAME = re.compile(r'op_name="([^"]*)"')
_WINDOW = re.compile(r"window=\{size=([\dx]+)([^}]*)\}")
_DIMLABELS = re.compile(r"dim_labels=(\w+)_(\w+)->(\w+)")
_CONTRACT = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def _dims(shape: str) -> list[int]:
  m = _SHAPE.search(shape)
  return [int(d) for d in m.group(2).split(",") if d] if m else []


def _prod(xs) -> int:
  p = 1
  for x in xs:
    p *= x
  return p


def parse_hlo(text: str) -> dict:
  """{instruction name: {"opcode", "shape", "operands", "op_name", "computation", "calls", "line"}}."""
  instrs, comp = {}, None
  for line in text.splitlines():
    m = _INSTR.match(line)
    if m:
      name, shape, opcode, rest = m.groups()
      operands = re.findall(r"%([\w.\-]+)", rest.split("),")[0])
      op_name = _OPNAME.search(rest)
      calls = _CALLS.search(rest)
      instrs[name] = dict(opcode=opcode, shape=shape, operands=operands, computation=comp,
                          op_name=op_name.group(1) if op_name else "", calls=calls.group(1) if calls else None,
                          line=line.strip())
      continue
    m = _COMP.match(line)
    if m and "=" not in line.split("{")[0]:
      comp = m.group(1)
  return instrs


def op_flops(ins: dict, instrs: dict) -> int:
  """FLOPs of a convolution or dot from its shapes (0 for other opcodes)."""
  out = _dims(ins["shape"])
  if ins["opcode"] == "convolution":
    w = _WINDOW.search(ins["line"])
    labels = _DIMLABELS.search(ins["line"])
    lhs = instrs.get(ins["operands"][0]) if ins["operands"] else None
    if not (w and labels and lhs):
      return 0
    window = _prod(int(s) for s in w.group(1).split("x"))
    lhs_dims = _dims(lhs["shape"])
    cin = lhs_dims[labels.group(1).index("f")]
    groups = re.search(r"feature_group_count=(\d+)", ins["line"])
    cin //= int(groups.group(1)) if groups else 1
    return 2 * _prod(out) * window * cin
  if ins["opcode"] == "dot":
    c = _CONTRACT.search(ins["line"])
    lhs = instrs.get(ins["operands"][0]) if ins["operands"] else None
    if not (c and lhs):
      return 0
    lhs_dims = _dims(lhs["shape"])
    k = _prod(lhs_dims[int(i)] for i in c.group(1).split(",") if i)
    return 2 * _prod(out) * k
  return 0


def describe_conv(ins: dict, instrs: dict) -> str:
  """'3x3 s1 64x64 12->64' from a convolution's window, dim labels and shapes."""
  w = _WINDOW.search(ins["line"])
  labels = _DIMLABELS.search(ins["line"])
  lhs = instrs.get(ins["operands"][0]) if ins["operands"] else None
  if not (w and labels and lhs):
    return "?"
  lhs_dims, out = _dims(lhs["shape"]), _dims(ins["shape"])
  li, oi = labels.group(1), labels.group(3)
  stride = re.search(r"stride=([\dx]+)", w.group(2))
  lhs_dil = re.search(r"lhs_dilate=([\dx]+)", w.group(2))
  spatial = "x".join(str(lhs_dims[li.index(d)]) for d in "01")
  extra = (f" s{stride.group(1)}" if stride else "") + (f" lhs_dilate{lhs_dil.group(1)}" if lhs_dil else "")
  return f"{w.group(1)}{extra} in {spatial} {lhs_dims[li.index('f')]}->{out[oi.index('f')]}"


def inner_ops(ins: dict, instrs: dict) -> list[dict]:
  """The instructions of a fusion's (or wrapped op's) called computation, else [ins]."""
  if not ins["calls"]:
    return [ins]
  return [i for i in instrs.values() if i["computation"] == ins["calls"]]


def categorise(name: str, instrs: dict) -> tuple[str, str, int]:
  """(category, detail, flops) of a top-level (executed) instruction."""
  ins = instrs.get(name)
  if ins is None:
    return "unmatched", name, 0
  inner = inner_ops(ins, instrs)
  opcodes = {i["opcode"] for i in inner}
  flops = sum(op_flops(i, instrs) for i in inner)
  heavy = [i for i in inner if i["opcode"] in ("convolution", "dot")]
  op_name = (heavy[0]["op_name"] if heavy else ins["op_name"]) or next(
      (i["op_name"] for i in inner if i["op_name"]), "")
  backward = "transpose(" in op_name
  lname = op_name.lower()
  if heavy:
    h = heavy[0]
    if "dpu" in lname:
      return "dpu products (einsums, 1x1 attention)", h["opcode"] + (" bwd" if backward else " fwd"), flops
    up = "upsample" in lname or "convtranspose" in lname
    if h["opcode"] == "convolution":
      desc = describe_conv(h, instrs)
      # The filter gradient's output is a kernel (tiny spatial dims) and its window a whole map (its
      # op_name is sometimes empty); the input gradient is a map-sized convolution under transpose(...).
      out, labels = _dims(h["shape"]), _DIMLABELS.search(h["line"])
      spatial = [out[labels.group(3).index(d)] for d in "01"] if labels else [0, 0]
      window = [int(s) for s in _WINDOW.search(h["line"]).group(1).split("x")] if _WINDOW.search(h["line"]) else [0]
      kind = "bwd-filter" if max(spatial) <= 3 and max(window) > 3 else ("bwd-input" if backward else "fwd")
      if kind == "bwd-filter" and labels:
        o = labels.group(3)
        desc = (f"{spatial[0]}x{spatial[1]} kernel grad over map {_WINDOW.search(h['line']).group(1)} "
                f"{out[o.index('b')]}->{out[o.index('f')]}")
      return ("upsample conv " if up else "conv ") + kind, desc, flops
    lhs = instrs.get(h["operands"][0]) if h["operands"] else None
    detail = f"{lhs['shape'].split('{')[0] if lhs else '?'} -> {h['shape'].split('{')[0]}"
    # Convolutions computed as matrix products: im2col (fwd and bwd) and the dwdot filter gradient (bwd).
    return ("upsample conv as dot " if up else "conv as dot ") + ("bwd" if backward else "fwd"), detail, flops
  if "is-finite" in name or "is_finite" in lname:
    return "NaN guard (is-finite checks)", ins["opcode"], flops
  if re.search(r"reduce_window_max|select_and_scatter|max_pool", lname):
    return "pooling (max-pool fwd / bwd)", "bwd" if backward else "fwd", flops
  if lname and "jvp(" not in lname:  # After the gradient: Adam, the grad norm, the guard's select.
    kind = "guard select" if "select_n" in lname else lname.rsplit("/", 1)[-1]
    return "optimizer (Adam, grad norm, guard select)", kind, flops
  if ins["opcode"] in ("transpose", "copy") or re.match(r"(transpose|copy|bitcast_copy|copy_bitcast)", name):
    return "layout (transpose / copy)", name.rstrip("0123456789.").rstrip("_"), flops
  if opcodes & {"reduce"}:
    return "reductions", name.rstrip("0123456789.").rstrip("_"), flops
  if re.match(r"(pad|slice|concatenate|dynamic)", name) or ins["opcode"] in ("pad", "slice", "concatenate"):
    return "pad / slice / concat", name.rstrip("0123456789.").rstrip("_"), flops
  return "elementwise fusions", name.rstrip("0123456789.").rstrip("_"), flops


def load_trace(trace_dir: str) -> list[dict]:
  """Per-HLO-op complete events ("X" with an ``hlo_op`` argument) of the newest trace in ``trace_dir``."""
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
  if not paths:
    raise RuntimeError(f"no *.trace.json.gz under {trace_dir}")
  with gzip.open(paths[-1]) as f:
    events = json.load(f)["traceEvents"]
  return [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]


def breakdown(events: list[dict], instrs: dict, steps: int, step_s: float) -> dict:
  """Per category and per (category, detail): ms per step, % of the summed op time, GFLOP, GFLOP/s."""
  per_op = collections.defaultdict(float)
  for e in events:
    per_op[e["args"]["hlo_op"]] += e["dur"] * 1e-3 / steps  # ms per step
  cats = collections.defaultdict(lambda: dict(ms=0.0, flops=0, ops=0))
  details = collections.defaultdict(lambda: dict(ms=0.0, flops=0, ops=0))
  for op, ms in per_op.items():
    cat, detail, flops = categorise(op, instrs)
    for d, key in ((cats, cat), (details, (cat, detail))):
      d[key]["ms"] += ms
      d[key]["flops"] += flops
      d[key]["ops"] += 1
  total_ms = sum(per_op.values())

  def row(key, v):
    r = dict(ms_per_step=round(v["ms"], 3), pct_of_op_time=round(100 * v["ms"] / total_ms, 2),
             gflop=round(v["flops"] / 1e9, 3), hlo_ops=v["ops"])
    r["gflop_per_s"] = round(v["flops"] / 1e6 / v["ms"], 2) if v["flops"] and v["ms"] > 0 else None
    return dict(category=key, **r) if isinstance(key, str) else dict(category=key[0], detail=key[1], **r)

  cat_rows = sorted((row(k, v) for k, v in cats.items()), key=lambda r: -r["ms_per_step"])
  det_rows = sorted((row(k, v) for k, v in details.items()), key=lambda r: -r["ms_per_step"])
  top_ops = sorted(per_op.items(), key=lambda kv: -kv[1])[:40]
  return dict(op_time_ms_per_step=round(total_ms, 2), step_wall_ms=round(step_s * 1e3, 2),
              op_time_over_wall=round(total_ms / (step_s * 1e3), 3), categories=cat_rows, details=det_rows,
              per_op_ms={op: round(ms, 3) for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])},
              top_ops=[dict(hlo_op=op, ms_per_step=round(ms, 3), category=categorise(op, instrs)[0],
                            detail=categorise(op, instrs)[1], gflop=round(categorise(op, instrs)[2] / 1e9, 3),
                            op_name=(instrs.get(op) or {}).get("op_name", "")) for op, ms in top_ops])


def markdown(result: dict) -> str:
  """The category table and the top detail rows as markdown."""
  b = result["breakdown"]
  lines = [f"MPN train step, paper width, {result['size']}x{result['size']}, batch {result['batch']}, "
           f"{result['threads']} thread(s){' (Eigen multi-thread)' if result['multi_thread'] else ''}; "
           f"{result['environment']['cpu']['model_name']}; jax {result['environment']['jax']}. "
           f"Step wall {b['step_wall_ms']:.0f} ms (median of {len(result['step_s'])}); HLO op time "
           f"{b['op_time_ms_per_step']:.0f} ms/step; whole-module FLOPs (cost_analysis) "
           f"{result['cost_analysis_gflop']:.1f} GFLOP.", "",
           "| category | ms / step | % of op time | GFLOP | GFLOP/s | HLO ops |", "|---|---:|---:|---:|---:|---:|"]
  for r in b["categories"]:
    gfs = f"{r['gflop_per_s']:.1f}" if r["gflop_per_s"] else "-"
    lines.append(f"| {r['category']} | {r['ms_per_step']:.1f} | {r['pct_of_op_time']:.1f} | {r['gflop']:.2f} | "
                 f"{gfs} | {r['hlo_ops']} |")
  lines += ["", "Largest (category, detail) rows:", "", "| category | detail | ms / step | % | GFLOP | GFLOP/s |",
            "|---|---|---:|---:|---:|---:|"]
  for r in b["details"][:25]:
    gfs = f"{r['gflop_per_s']:.1f}" if r["gflop_per_s"] else "-"
    lines.append(f"| {r['category']} | {r['detail']} | {r['ms_per_step']:.1f} | {r['pct_of_op_time']:.1f} | "
                 f"{r['gflop']:.2f} | {gfs} |")
  return "\n".join(lines) + "\n"


def measure(args, lib) -> dict:
  """One process's bench.py figures (``--measure``): train step at ``--batch`` and inference at batch 1."""
  config = lib.load_config("mpn", "ped2", args.size, "float32")
  train = lib.bench_train_step(config, args.batch, repeats=args.step_repeats, warmup=1)
  infer = lib.bench_inference(config, 1, repeats=5, warmup=2)
  return {"train_s": train["median_s"], "train_samples_s": train["samples_s"],
          "infer_b1_s": infer["median_s"], "infer_b1_samples_s": infer["samples_s"],
          "train_compile_s": train["compile_s"], "xla_flags": os.environ.get("XLA_FLAGS", "")}


def ab_flags(args) -> dict:
  """Interleaved before/after of XLA_FLAGS variants (``--ab-flags "A|B"``), one fresh process per sample.

  Each round runs every variant once (order alternating between rounds); each process compiles and
  times the train step (1 warm-up, ``--step-repeats`` timed) and inference at batch 1 (2 + 5), the
  bench.py machinery, pinned to ``--threads`` CPUs. Ratio = first variant's time / other's (> 1: faster).
  """
  import subprocess  # pylint: disable=import-outside-toplevel
  variants = args.ab_flags.split("|")
  samples = {v: [] for v in variants}
  for r in range(args.rounds):
    for v in (variants if r % 2 == 0 else variants[::-1]):
      env = dict(os.environ, XLA_FLAGS=v, PYTHONPATH=str(REPO))
      cmd = [sys.executable, __file__, "--measure", "--size", str(args.size), "--batch", str(args.batch),
             "--step-repeats", str(args.step_repeats), "--multi-thread"]
      if args.threads:
        cmd += ["--threads", str(args.threads)]
      out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
      samples[v].append(json.loads(out.strip().splitlines()[-1]))
      print(f"round {r} {v!r}: {samples[v][-1]['train_s']:.3f} s train, {samples[v][-1]['infer_b1_s']:.3f} s "
            "inference b1", flush=True)
  base = variants[0]
  rows = {}
  for v in variants:
    rows[v] = {k: statistics.median(s[k] for s in samples[v]) for k in ("train_s", "infer_b1_s")}
    rows[v]["samples"] = samples[v]
    for k in ("train_s", "infer_b1_s"):
      rows[v][f"speedup_{k[:-2]}_vs_first"] = rows[base][k] / rows[v][k]
      rows[v][f"paired_speedups_{k[:-2]}"] = [round(b[k] / s[k], 3) for b, s in zip(samples[base], samples[v])]
  return dict(variants=rows)


def compile_train_step(config, batch: int):
  """(state, frames, rng, compiled step, compile seconds) on one device: the step as `jaxvad train` jits it."""
  import jax  # pylint: disable=import-outside-toplevel
  from experiments import bench_lib as lib  # pylint: disable=import-outside-toplevel
  from jaxvad.train import loop  # pylint: disable=import-outside-toplevel
  from jaxvad.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from jaxvad.train import step as step_lib  # pylint: disable=import-outside-toplevel
  mesh = mesh_lib.make_mesh(1)
  mdef, tx, state = loop.create_train_state(config, mesh, tuple(config.data.size))
  step = step_lib.jit_train_step(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model), mesh)
  frames = mesh_lib.shard_batch({"frames": lib.random_windows(config, batch)}, mesh)
  rng = jax.random.PRNGKey(0)
  t0 = time.perf_counter()
  compiled = step.lower(state, frames, rng).compile()
  return state, frames, rng, compiled, time.perf_counter() - t0


def ab_train_options(args, lib, loop, mesh_lib, step_lib, jax) -> dict:
  """In one process: the train step compiled without ("before") and with ("after") the CPU compiler options
  of `step.jit_train_step`, from the same initial state, timed in alternating order (``--ab-train``)."""
  built = {}
  options = step_lib.cpu_train_compiler_options
  for name in ("before", "after"):
    step_lib.cpu_train_compiler_options = (lambda: ()) if name == "before" else options
    config = lib.load_config("mpn", "ped2", args.size, "float32")
    state, frames, rng, compiled, compile_s = compile_train_step(config, args.batch)
    state, metrics = jax.block_until_ready(compiled(state, frames, rng))  # Warm-up; its metrics compared.
    built[name] = dict(fn=compiled, state=state, frames=frames, rng=rng, compile_s=compile_s, times=[],
                       loss=float(metrics["loss"]), grad_norm=float(metrics["grad_norm"]),
                       ynn_fusions=compiled.as_text().count("ynn_fusion"), options=dict(step_lib.cpu_train_compiler_options()))
  step_lib.cpu_train_compiler_options = options
  order = list(built)
  for r in range(args.rounds):
    for name in (order if r % 2 == 0 else order[::-1]):
      b = built[name]
      t0 = time.perf_counter()
      b["state"], _ = jax.block_until_ready(b["fn"](b["state"], b["frames"], b["rng"]))
      b["times"].append(time.perf_counter() - t0)
      print(f"round {r} {name}: {b['times'][-1]:.3f} s", flush=True)
  rows = {n: dict(median_s=statistics.median(b["times"]), times_s=[round(t, 4) for t in b["times"]],
                  compile_s=round(b["compile_s"], 2), first_step_loss=b["loss"], first_step_grad_norm=b["grad_norm"],
                  ynn_fusions=b["ynn_fusions"], compiler_options=b["options"]) for n, b in built.items()}
  paired = [bt / at for bt, at in zip(built["before"]["times"], built["after"]["times"])]
  bl, al = rows["before"], rows["after"]
  return dict(variants=rows, speedup_median=bl["median_s"] / al["median_s"], paired_speedups=[round(x, 3) for x in paired],
              loss_rel_diff=abs(bl["first_step_loss"] - al["first_step_loss"]) / abs(bl["first_step_loss"]),
              grad_norm_rel_diff=abs(bl["first_step_grad_norm"] - al["first_step_grad_norm"]) / abs(bl["first_step_grad_norm"]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--steps", type=int, default=2, help="profiled steps")
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--threads", type=int, default=None, help="CPUs (affinity); default 1, or all with "
                      "--multi-thread")
  parser.add_argument("--multi-thread", action="store_true", help="keep XLA's Eigen intra-op threads")
  parser.add_argument("--conv", default=None, help="model.conv override (default: the config's, auto)")
  parser.add_argument("--set", action="append", default=[], help="model.KEY=VALUE overrides (python literal)")
  parser.add_argument("--ab-flags", default=None, help='XLA_FLAGS variants "A|B": time the train step and '
                      "inference b1 under each, interleaved, one process per sample, instead of profiling")
  parser.add_argument("--ab-train", action="store_true", help="time the train step without / with "
                      "step.jit_train_step's CPU compiler options, interleaved in one process")
  parser.add_argument("--rounds", type=int, default=2, help="--ab-flags / --ab-train rounds")
  parser.add_argument("--step-repeats", type=int, default=2, help="timed train steps per --ab-flags sample")
  parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  threads = args.threads or (None if args.multi_thread else 1)
  if threads:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
  if not args.multi_thread:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  sys.path.insert(0, str(REPO))
  import ast  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from experiments import bench_lib as lib  # pylint: disable=import-outside-toplevel
  from jaxvad.train import loop  # pylint: disable=import-outside-toplevel
  from jaxvad.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from jaxvad.train import step as step_lib  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_default_prng_impl", "unsafe_rbg")  # As bench.py: faster init, same step.
  if args.measure:
    print(json.dumps(measure(args, lib)))
    return
  if args.ab_train:
    result = dict(what="MPN paper width train step without/with step.CPU_TRAIN_COMPILER_OPTIONS, interleaved",
                  size=args.size, batch=args.batch, threads=threads or len(os.sched_getaffinity(0)),
                  multi_thread=args.multi_thread, xla_flags=os.environ.get("XLA_FLAGS", ""), rounds=args.rounds,
                  **ab_train_options(args, lib, loop, mesh_lib, step_lib, jax), environment=lib.environment())
    suffix = f"_{args.size}_b{args.batch}" + ("_mt" if args.multi_thread else "")
    out = pathlib.Path(args.out or REPO / "experiments" / "results" / f"profile_train_step_ab{suffix}.json")
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))
    return
  if args.ab_flags is not None:
    result = dict(what="MPN paper width: train step and inference b1 under XLA_FLAGS variants, interleaved",
                  size=args.size, batch=args.batch, threads=threads, rounds=args.rounds, **ab_flags(args),
                  environment=lib.environment())
    out = pathlib.Path(args.out or REPO / "experiments" / "results" / f"profile_train_step_flags_ab_{args.size}.json")
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({v: {k: x for k, x in r.items() if k != "samples"} for v, r in result["variants"].items()},
                     indent=1))
    return
  config = lib.load_config("mpn", "ped2", args.size, "float32", conv=args.conv)
  for kv in args.set:
    key, _, value = kv.partition("=")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    config.model[key.removeprefix("model.")] = value
  state, frames, rng, compiled, compile_s = compile_train_step(config, args.batch)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  instrs = parse_hlo(compiled.as_text())
  for _ in range(args.warmup):
    state, _ = jax.block_until_ready(compiled(state, frames, rng))
  times = []
  with tempfile.TemporaryDirectory(prefix="jaxvad_prof_") as tmp:
    jax.profiler.start_trace(tmp)
    for _ in range(args.steps):
      t0 = time.perf_counter()
      state, _ = jax.block_until_ready(compiled(state, frames, rng))
      times.append(time.perf_counter() - t0)
    jax.profiler.stop_trace()
    events = load_trace(tmp)
  step_s = statistics.median(times)
  result = dict(model="mpn", config_file="configs/mpn.py:ped2", size=args.size, batch=args.batch,
                params=int(n_params), conv=config.model.get("conv"), upsample=config.model.upsample,
                train_compiler_options=dict(step_lib.cpu_train_compiler_options()),
                overrides=args.set, threads=threads or len(os.sched_getaffinity(0)),
                multi_thread=args.multi_thread, xla_flags=os.environ.get("XLA_FLAGS", ""),
                compile_s=round(compile_s, 2), step_s=[round(t, 4) for t in times],
                cost_analysis_gflop=float(cost.get("flops", 0.0)) / 1e9,
                cost_analysis_bytes_accessed=float(cost.get("bytes accessed", 0.0)),
                hlo_instructions=len(instrs), trace_events=len(events),
                breakdown=breakdown(events, instrs, args.steps, step_s), environment=lib.environment())
  result["breakdown"]["counted_gflop"] = round(sum(r["gflop"] for r in result["breakdown"]["categories"]), 3)
  suffix = f"_{args.size}_b{args.batch}" + ("_mt" if args.multi_thread else "")
  out = pathlib.Path(args.out or REPO / "experiments" / "results" / f"profile_train_step{suffix}.json")
  out.write_text(json.dumps(result, indent=1))
  out.with_suffix(".md").write_text(markdown(result))
  print(markdown(result))
  print(f"wrote {out} (compile {compile_s:.1f} s, steps {times})")


if __name__ == "__main__":
  main()
