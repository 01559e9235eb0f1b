"""Seed study: train and evaluate one config over several seeds, then report each score row's AUCs.

Single-seed frame AUCs on Ped2 at CPU size move by several points from seed to seed, so model
comparisons there need a few seeds. For every seed this runs ``jaxvad run --set seed=S`` into
``ROOT/seed_S`` (a seed whose ``eval/results.json`` exists is not rerun), then recomputes from its
``eval/scores.npz`` the pooled frame AUC, the per-video AUC and the Gaussian-smoothed frame AUC
(the reference's 15-tap, sigma 2 filter) of every single score (FP = "psnr", FR = "feature_error",
...) and of the config's combined score, and writes one JSON with the per-seed values and their
mean, standard deviation, min and max, and each seed's training time (summed from the run's
``metrics.jsonl``, compilation included; a resumed run's file keeps each step once, so it sums the
time of the windows that were kept) and, for a
seed this call ran, the wall time of its ``jaxvad run`` (kept in ``ROOT/seed_S/seed_run.json``).

Usage:
  JAXVAD_DATA=../shared/data .venv/bin/python experiments/seeds.py \\
      --config configs/mpn.py:ped2_cpu --seeds 0,1,2,3,4 --root runs/seeds/mpn_ped2_cpu \\
      --out experiments/results/ped2_cpu_seeds_mpn.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # Run as a script from anywhere.

from experiments import cpu_info  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.evaluate import report, scoring  # noqa: E402
from jaxvad.utils import atomic_open  # noqa: E402

ROW_NAMES = {"psnr": "FP", "feature_error": "FR", "memory_distance": "memory"}
# Columns that `evaluate_scores` derives and `save_scores` stores beside the raw scores.
DERIVED = ("normality", "anomaly", "anomaly_smoothed")


def score_rows(score_names: list[str], combined: dict[str, float]) -> dict[str, dict[str, float]]:
  """Row name -> score weights: each known single score alone, then the combined score if it mixes several."""
  rows = {ROW_NAMES[s]: {s: 1.0} for s in score_names if s in ROW_NAMES}
  if len(combined) > 1:
    order = [s for s in ROW_NAMES if s in combined] + sorted(s for s in combined if s not in ROW_NAMES)
    rows["&".join(ROW_NAMES.get(s, s) for s in order)] = {s: combined[s] for s in order}
  return rows


def run_aucs(eval_dir: str | pathlib.Path) -> dict[str, dict[str, float]]:
  """Row -> {"auc", "per_video_auc", "auc_smoothed"}: `scoring.evaluate_scores` of each row's weights
  over the raw per-frame scores saved in one evaluation directory (no model is rerun)."""
  loaded = report.load_scores(eval_dir)
  if loaded["labels"] is None:
    raise ValueError(f"{eval_dir}/scores.npz has no labels: no AUC to compute")
  results = loaded["results"]
  raw = {k: v for k, v in loaded["scores"].items() if k not in DERIVED}
  video_scores = scoring.VideoScores(
      dataset=results.get("dataset", ""), t=loaded["t"], names=loaded["names"], scenes=loaded["scenes"],
      num_frames=loaded["num_frames"], frame_index=loaded["frame_index"], scores=raw,
      labels=loaded["labels"], first_window=results.get("first_window", 0))
  out = {}
  for row, w in score_rows(list(raw), results.get("score_weights") or {"psnr": 1.0}).items():
    res = scoring.evaluate_scores(video_scores, score_weights=w, high_is_normal=results.get("high_is_normal"),
                                  smooth=True)
    out[row] = {k: res[k] for k in ("auc", "per_video_auc", "auc_smoothed")}
  return out


def train_seconds(workdir: str | pathlib.Path) -> float | None:
  """Seconds spent in training steps: sum over the log windows of metrics.jsonl of steps / steps_per_s.

  None when the run has no metrics file (or no timed window)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return None
  total, prev, timed = 0.0, 0, False
  for line in path.read_text().splitlines():
    row = json.loads(line) if line.strip() else {}
    if "step" not in row:
      continue
    if row.get("steps_per_s"):
      total += (row["step"] - prev) / row["steps_per_s"]
      timed = True
    prev = row["step"]
  return total if timed else None


def run_times(workdir: str | pathlib.Path) -> dict[str, float | None]:
  """{"train_s": from metrics.jsonl, "wall_s": the ``jaxvad run`` call that seeds.py timed (else None)}."""
  record = pathlib.Path(workdir) / "seed_run.json"
  wall = json.loads(record.read_text()).get("wall_s") if record.exists() else None
  return {"train_s": train_seconds(workdir), "wall_s": wall}


def summarize(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
  """Row -> metric -> {"mean", "std" (sample, ddof 1), "min", "max", "n"} over the seeds."""
  first = next(iter(per_seed.values()))
  out = {}
  for row in first:
    out[row] = {}
    for metric in first[row]:
      v = np.array([per_seed[s][row][metric] for s in per_seed], np.float64)
      out[row][metric] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                          "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}
  return out


def parse_seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    raise SystemExit(f"error: --seeds must be comma-separated integers, got {text!r}") from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise SystemExit(f"error: --seeds needs distinct seeds, got {text!r}")
  return seeds


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, help="e.g. configs/mpn.py:ped2_cpu")
  p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated, e.g. 0,1,2")
  p.add_argument("--root", required=True, help="work directories ROOT/seed_S")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
  p.add_argument("--out", required=True, help="JSON file to write")
  args = p.parse_args(argv)

  per_seed, times = {}, {}
  for seed in parse_seeds(args.seeds):
    workdir = pathlib.Path(args.root) / f"seed_{seed}"
    if not (workdir / "eval" / "results.json").exists():
      cli = "import sys; from jaxvad.cli import main; sys.exit(main())"  # The `jaxvad` command.
      cmd = [sys.executable, "-c", cli, "run", "--config", args.config, "--workdir", str(workdir),
             "--no-progress", "--set", f"seed={seed}"]
      cmd += [a for s in args.set for a in ("--set", s)]
      print("+", " ".join(cmd), flush=True)
      t0 = time.perf_counter()
      if subprocess.run(cmd).returncode:
        raise SystemExit(f"error: seed {seed} failed (see {workdir}); rerun to resume it")
      with atomic_open(workdir / "seed_run.json", "w") as f:
        json.dump({"wall_s": time.perf_counter() - t0, "command": cmd[3:]}, f)
    per_seed[seed] = run_aucs(workdir / "eval")
    times[seed] = run_times(workdir)
    print(f"seed {seed}: " + ", ".join(f"{r} {v['auc']:.4f}" for r, v in per_seed[seed].items()), flush=True)

  payload = {"config": args.config, "overrides": args.set, "seeds": list(per_seed),
             "per_seed": {str(s): v for s, v in per_seed.items()}, "summary": summarize(per_seed),
             "times": {str(s): v for s, v in times.items()}, "cpu": cpu_info.cpu_info()}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  with atomic_open(out, "w") as f:
    json.dump(payload, f, indent=2)
    f.write("\n")
  for row, m in payload["summary"].items():
    a = m["auc"]
    print(f"{row}: frame AUC {a['mean']:.4f} +- {a['std']:.4f} (min {a['min']:.4f}, max {a['max']:.4f}, n {a['n']})")


if __name__ == "__main__":
  main()
