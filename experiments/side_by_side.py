"""jaxvad against the official PyTorch MPN, side by side on one machine, in one run (issue 16, item 1).

Runs the peer harness (``../shared/peers/torch_peer_bench.py``, which imports the official MPN code from
``--peers-src``) and jaxvad's own timings (``experiments/bench_lib.py``, the machinery of ``bench.py``)
as separate processes, INTERLEAVED: each round runs one process per side and size, the side that goes
first alternating from round to round. Both sides get the same settings: the same CPUs (affinity set
before the process starts), the same thread counts (``--threads``: torch.set_num_threads, XLA:CPU's pool
sized from the affinity, OMP/MKL env), the same glibc malloc env (``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=68719476736``: freed memory is kept, not unmapped), the same warm-up / repeat
counts, sizes and batches, the paper width (MPN 1.0, 13.3 M parameters).

Parts (a part's figure in a round is the median of that process's timed calls):
  infer_b1, infer_b4  inference at batch 1 and 4 (frames/s)
  train_b4            one training step at batch 4 (Adam)
  adapt_k1            K = 1 test-time adaptation (one inner step on one window)
  meta                second-order meta step, one episode of K = Q = 2 (the official Train_meta.py shape)

Writes ONE JSON (per round and side: the medians and every timed sample; per part and size: the median
over rounds, the spread, the ratio jaxvad / PyTorch speed and its per-round values) and the markdown
table of ratios next to it (same name, ``.md``). The JSON records the CPU model and flags, the CPUs and
thread settings, the environment and the jax / jaxlib / torch versions.

Usage ($PEERS built per ../shared/peers/README.md; the official code is never copied into this repo):
  nice -n 19 /work/venv/bin/python experiments/side_by_side.py --torch-python $PEERS/venv/bin/python \\
      --peers-src $PEERS/src/MPN --sizes 64,256 --rounds 3 --threads 2 --out /tmp/side_by_side.json
  python experiments/side_by_side.py --sides jaxvad --sizes 32 --rounds 1 ...   # jaxvad side only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import cpu_info  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_HARNESS = REPO.parent / "shared" / "peers" / "torch_peer_bench.py"
PARTS = ("infer_b1", "infer_b4", "train_b4", "adapt_k1", "meta")
LABELS = {"infer_b1": "inference b1", "infer_b4": "inference b4", "train_b4": "train step b4",
          "adapt_k1": "K = 1 adaptation", "meta": "2nd-order meta step (K = Q = 2)"}
INFER_BATCH = {"infer_b1": 1, "infer_b4": 4}
STEP_PARTS = ("train_b4", "adapt_k1", "meta")  # Timed with --step-warmup / --step-repeats.
# Harness --only names of each part.
TORCH_ONLY = {"infer_b1": "infer", "infer_b4": "infer", "train_b4": "train", "adapt_k1": "tta", "meta": "meta"}
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}  # 2**36, the harness's "keep".
THREAD_ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
SIDES = ("torch", "jaxvad")


# ----------------------------------------------------------------------------- the two sides' commands
def side_env(threads: int, base: dict | None = None) -> dict:
  """The environment both sides run under: ``base`` (default os.environ) + malloc + thread counts."""
  env = dict(os.environ if base is None else base)
  env.update(MALLOC_ENV)
  env.update({k: str(threads) for k in THREAD_ENV_KEYS})
  return env


def torch_command(args, size: int, out: pathlib.Path) -> list[str]:
  """The peer harness's command line for one size (``--malloc keep``: the env is already set)."""
  only = sorted({"params"} | {TORCH_ONLY[p] for p in args.parts})
  batches = [INFER_BATCH[p] for p in args.parts if p in INFER_BATCH] or [1]
  return [args.torch_python, str(args.harness), "--src", str(args.peers_src), "--model", "mpn",
          "--size", str(size), "--batch", ",".join(map(str, batches)), "--train-batch", "4",
          "--threads", str(args.threads), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
          "--step-warmup", str(args.step_warmup), "--step-repeats", str(args.step_repeats),
          "--only", ",".join(only), "--tta-k", "1", "--meta-pair", "2", "--malloc", "keep", "--out", str(out)]


def jax_command(args, size: int, out: pathlib.Path) -> list[str]:
  """This file in ``--worker`` mode: jaxvad's timings of the same parts at one size."""
  cmd = [args.jax_python, str(pathlib.Path(__file__).resolve()), "--worker", "--sizes", str(size),
         "--parts", ",".join(args.parts), "--threads", str(args.threads), "--warmup", str(args.warmup),
         "--repeats", str(args.repeats),
         "--step-warmup", str(args.step_warmup), "--step-repeats", str(args.step_repeats),
         "--variant", args.variant, "--hessian", args.hessian, "--out", str(out)]
  return cmd + (["--conv", args.conv] if args.conv else [])


def run_process(cmd: list[str], env: dict, cpus: list[int], out: pathlib.Path) -> dict:
  """Runs one side's process pinned to ``cpus``; its JSON, or {"error", "stderr_tail"}."""
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                        preexec_fn=lambda: os.sched_setaffinity(0, cpus))
  wall = time.perf_counter() - t0
  if proc.returncode != 0 or not out.exists():
    return {"error": f"exit code {proc.returncode}", "stderr_tail": proc.stderr[-3000:], "wall_s": wall}
  result = json.loads(out.read_text())
  result["process_wall_s"] = wall
  return result


# ----------------------------------------------------------------------------- jaxvad worker
def jax_worker(args) -> dict:
  """Times ``args.parts`` at one size in this process (affinity and env set by the parent)."""
  from experiments import bench_lib as lib  # pylint: disable=import-outside-toplevel
  lib.jax.config.update("jax_default_prng_impl", "unsafe_rbg")  # As bench.py: no random draws are timed.
  size = args.sizes[0]
  infer_timing = dict(warmup=args.warmup, repeats=args.repeats, budget_s=None)
  step_timing = dict(warmup=args.step_warmup, repeats=args.step_repeats, budget_s=None)
  config = lib.load_config("mpn", args.variant, size, "float32", conv=args.conv)
  res = {"environment": lib.environment(), "threads": args.threads, "size": size, "variant": args.variant,
         "width": config.model.width,
         "conv": config.model.get("conv", "xla"), "hessian": args.hessian, "parts": {}}
  for part in args.parts:
    t0 = time.perf_counter()
    try:
      if part in INFER_BATCH:
        row = lib.bench_inference(config, INFER_BATCH[part], **infer_timing)
      elif part == "train_b4":
        row = lib.bench_train_step(config, 4, **step_timing)
      elif part == "adapt_k1":
        row = lib.bench_adapt(config, **step_timing)
      else:
        row = lib.bench_meta_step(config, 1, first_order=False, k=2, q=2, hessian=args.hessian, **step_timing)
    except Exception as e:  # pylint: disable=broad-except
      row = {"error": f"{type(e).__name__}: {e}"}
    row["part_wall_s"] = time.perf_counter() - t0
    res["parts"][part] = row
    print(f"jaxvad {part} size {size}: {row.get('median_s', row.get('error'))}", file=sys.stderr, flush=True)
  res["peak_memory"] = lib.peak_memory()
  return res


# ----------------------------------------------------------------------------- ratios
def part_times(side: str, result: dict) -> dict:
  """{part: {"median_s", "samples_s"}} from one process's JSON (harness or worker)."""
  if "error" in result:
    return {}
  if side == "jaxvad":
    return {p: {"median_s": r["median_s"], "samples_s": r.get("samples_s", [r["median_s"]])}
            for p, r in result["parts"].items() if "median_s" in r}
  where = {"infer_b1": ("infer", "b1"), "infer_b4": ("infer", "b4"), "train_b4": ("train",),
           "adapt_k1": ("tta",), "meta": ("meta",)}
  out = {}
  for part, keys in where.items():
    r = result
    for k in keys:
      r = r.get(k, {}) if isinstance(r, dict) else {}
    if "median_s" in r:
      out[part] = {"median_s": r["median_s"], "samples_s": r.get("samples_s", [r["median_s"]])}
  return out


def _spread(medians: list[float]) -> dict:
  med = statistics.median(medians)
  return {"median_s": med, "round_medians_s": medians, "min_s": min(medians), "max_s": max(medians),
          "spread_pct": 100.0 * (max(medians) - min(medians)) / med}


def summarize(rounds: list[dict], sizes: list[int], parts: list[str]) -> list[dict]:
  """One row per (size, part) both sides timed: medians over rounds, spread, ratio jaxvad / PyTorch speed.

  ``rounds``: [{"round", "size", "torch": part_times, "jaxvad": part_times}]. The ratio is the PyTorch
  median time over jaxvad's (> 1: jaxvad is faster); ``round_ratios`` pair the two sides round by round.
  """
  rows = []
  for size in sizes:
    for part in parts:
      got = [r for r in rounds if r["size"] == size and part in r["torch"] and part in r["jaxvad"]]
      if not got:
        continue
      row = {"size": size, "part": part, "label": LABELS[part], "rounds": len(got)}
      for side in SIDES:
        row[side] = _spread([r[side][part]["median_s"] for r in got])
        row[side]["samples_s"] = [s for r in got for s in r[side][part]["samples_s"]]
        if part in INFER_BATCH:
          row[side]["frames_per_s"] = INFER_BATCH[part] / row[side]["median_s"]
      row["ratio"] = row["torch"]["median_s"] / row["jaxvad"]["median_s"]
      row["round_ratios"] = [r["torch"][part]["median_s"] / r["jaxvad"][part]["median_s"] for r in got]
      rows.append(row)
  return rows


def _fmt(side: dict, part: str) -> str:
  if part in INFER_BATCH:
    return f"{side['frames_per_s']:.2f} fr/s"
  t = side["median_s"]
  return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.0f} ms"


def markdown(rows: list[dict]) -> str:
  """The table of ratios: medians over rounds, the ratio, its per-round range and each side's spread."""
  lines = ["| part | size | PyTorch (official code) | jaxvad | jaxvad / PyTorch speed | per-round ratios | "
           "spread PyTorch | spread jaxvad | rounds |", "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
  for r in rows:
    per_round = ", ".join(f"{x:.2f}" for x in r["round_ratios"])
    lines.append(f"| {r['label']} | {r['size']} | {_fmt(r['torch'], r['part'])} | {_fmt(r['jaxvad'], r['part'])} | "
                 f"{r['ratio']:.2f}x | {per_round} | {r['torch']['spread_pct']:.0f}% | "
                 f"{r['jaxvad']['spread_pct']:.0f}% | {r['rounds']} |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--torch-python", default=os.environ.get("JAXVAD_TORCH_PYTHON"),
                 help="python of the PyTorch venv ($PEERS/venv/bin/python; env JAXVAD_TORCH_PYTHON)")
  p.add_argument("--peers-src", default=os.environ.get("JAXVAD_PEERS_SRC"),
                 help="the patched official MPN source ($PEERS/src/MPN; env JAXVAD_PEERS_SRC)")
  p.add_argument("--harness", default=str(DEFAULT_HARNESS), help="the peer harness torch_peer_bench.py")
  p.add_argument("--jax-python", default=sys.executable, help="python with jaxvad (default: this one)")
  p.add_argument("--sides", default="torch,jaxvad", help="both (default) or one side: torch | jaxvad")
  p.add_argument("--sizes", default="64,256", help="comma-separated frame sizes (paper: 256)")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
  p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one process per side and size each)")
  p.add_argument("--threads", type=int, default=2, help="CPUs and threads given to each side")
  p.add_argument("--cpus", default=None, help="comma-separated CPU ids (default: the first --threads allowed)")
  p.add_argument("--warmup", type=int, default=2, help="untimed inference calls per process (harness default)")
  p.add_argument("--repeats", type=int, default=5, help="timed inference calls per process (harness default)")
  p.add_argument("--step-warmup", type=int, default=1, help="untimed train / adapt / meta calls per process")
  p.add_argument("--step-repeats", type=int, default=3, help="timed train / adapt / meta calls per process")
  p.add_argument("--variant", default="ped2", help="jaxvad config variant of configs/mpn.py (paper width: ped2)")
  p.add_argument("--conv", default=None, choices=("xla", "im2col", "auto"),
                 help="jaxvad model.conv (default: config's)")
  p.add_argument("--hessian", default="forward", choices=("forward", "reverse"), help="jaxvad meta-step gradient")
  p.add_argument("--out", default="/tmp/side_by_side.json", help="the JSON; the table goes next to it (.md)")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
  args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
  args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
  bad = (set(args.parts) - set(PARTS)) | (set(args.sides) - set(SIDES))
  if bad:
    p.error(f"unknown {sorted(bad)}: parts are {PARTS}, sides {SIDES}")
  if "torch" in args.sides and not args.worker:
    for flag, value in (("--torch-python", args.torch_python), ("--peers-src", args.peers_src),
                        ("--harness", args.harness)):
      if not value or not pathlib.Path(value).exists():
        p.error(f"{flag} {value!r} does not exist: build $PEERS per ../shared/peers/README.md and pass "
                f"{flag}, or run only jaxvad's side with --sides jaxvad")
  if args.worker:  # Pinned by the parent already.
    return args
  allowed = sorted(os.sched_getaffinity(0))
  args.cpu_list = [int(c) for c in args.cpus.split(",")] if args.cpus else allowed[:args.threads]
  if len(args.cpu_list) != args.threads:
    p.error(f"--cpus {args.cpu_list} has {len(args.cpu_list)} CPUs, --threads is {args.threads}: make them equal")
  return args


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  if args.worker:
    res = jax_worker(args)
    out.write_text(json.dumps(res, indent=2))
    return res
  env = side_env(args.threads)
  start = time.perf_counter()
  rounds, raw = [], []
  scratch = out.parent / (out.stem + "_procs")
  scratch.mkdir(exist_ok=True)
  for rnd in range(args.rounds):
    order = list(args.sides) if rnd % 2 == 0 else list(reversed(args.sides))
    for size in args.sizes:
      entry = {"round": rnd, "size": size, "order": order, "torch": {}, "jaxvad": {}}
      for side in order:
        path = scratch / f"{side}_{size}_r{rnd}.json"
        path.unlink(missing_ok=True)
        cmd = (torch_command if side == "torch" else jax_command)(args, size, path)
        result = run_process(cmd, env, args.cpu_list, path)
        entry[side] = part_times(side, result)
        raw.append({"round": rnd, "size": size, "side": side, "command": cmd, "result": result})
        what = result.get("error") or ", ".join(f"{p} {t['median_s']:.3f} s" for p, t in entry[side].items())
        print(f"[{time.perf_counter() - start:6.0f} s] round {rnd} size {size} {side}: {what}", flush=True)
      rounds.append(entry)
  rows = summarize(rounds, args.sizes, args.parts)
  table = markdown(rows)
  ok = {side: next((r["result"] for r in raw if r["side"] == side and "error" not in r["result"]), {})
        for side in SIDES}
  jenv = ok["jaxvad"].get("environment", {})
  report = {
      "what": __doc__.splitlines()[0],
      "ratio": "jaxvad speed / PyTorch speed = PyTorch median time / jaxvad median time (> 1: jaxvad faster); "
               "medians over rounds of each process's median",
      "cpu": cpu_info.cpu_info(), "cpus_used": args.cpu_list, "threads": args.threads,
      "env_both_sides": {k: env[k] for k in (*MALLOC_ENV, *THREAD_ENV_KEYS)},
      "versions": {"jax": jenv.get("jax"), "jaxlib": jenv.get("jaxlib"), "torch": ok["torch"].get("torch_version"),
                   "python_jaxvad": jenv.get("python"), "python_torch": ok["torch"].get("python")},
      "torch_threads": {k: ok["torch"].get(k) for k in ("threads", "interop_threads", "mkldnn")},
      "peer_files_sha256_16": ok["torch"].get("peer_files_sha256_16"), "peer_params": ok["torch"].get("params"),
      "jaxvad_settings": {k: ok["jaxvad"].get(k) for k in ("variant", "width", "conv", "hessian")},
      "git_commit": jenv.get("git_commit"), "git_dirty": jenv.get("git_dirty"),
      "settings": {"sizes": args.sizes, "parts": args.parts, "rounds": args.rounds, "sides": args.sides,
                   "warmup": args.warmup, "repeats": args.repeats, "step_warmup": args.step_warmup,
                   "step_repeats": args.step_repeats, "train_batch": 4, "adapt_k": 1, "meta_k_q": [2, 2]},
      "load_average_at_end": list(os.getloadavg()), "total_wall_s": time.perf_counter() - start,
      "rows": rows, "table": table, "rounds": rounds, "processes": raw,
  }
  out.write_text(json.dumps(report, indent=2))
  out.with_suffix(".md").write_text(f"CPU: {report['cpu']['model_name']}, {args.threads} threads on CPUs "
                                    f"{args.cpu_list}\n\n{table}\n")
  print(table)
  print(f"wrote {out} and {out.with_suffix('.md')} in {report['total_wall_s']:.0f} s")
  return report


if __name__ == "__main__":
  main()
