"""Paired seed table: models trained on the same seeds (`experiments/seeds.py` JSONs), one score row each.

For each model: the frame AUC of its score row on every seed, mean +- std (sample), the per-video and
smoothed AUC means, and the paired difference to a reference model over the seeds both have (mean +- std
of the per-seed differences, and on how many seeds it is positive), with each model's config, overrides and
training time per seed. Writes ``OUT.json`` and the markdown table ``OUT.md``.

Usage (issue 15 item 6, the 128x128 Ped2 study):
  python experiments/seeds_compare.py --reference baseline \\
      --runs "baseline=experiments/results/ped2_cpu128_seeds_baseline.json:FP" \\
      --runs "mpn=experiments/results/ped2_cpu128_seeds_mpn.json:FP&FR" \\
      --out experiments/results/ped2_cpu128_seeds
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from jaxvad.utils import atomic_open


def parse_run(text: str) -> tuple[str, str, str]:
  """``NAME=PATH:ROW`` -> (name, path, row)."""
  name, eq, rest = text.partition("=")
  path, colon, row = rest.rpartition(":")
  if not (eq and colon and name and path and row):
    raise SystemExit(f"error: --runs wants NAME=PATH:ROW (e.g. mpn=seeds_mpn.json:FP&FR), got {text!r}")
  return name, path, row


def _stats(values) -> dict[str, float]:
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def compare(runs: dict[str, tuple[dict, str]], reference: str) -> dict:
  """runs: name -> (seeds.py payload, row). Returns per-model seed AUCs, summaries and paired differences."""
  if reference not in runs:
    raise SystemExit(f"error: --reference {reference!r} is not one of the --runs names {sorted(runs)}")
  models = {}
  for name, (payload, row) in runs.items():
    per_seed = payload["per_seed"]
    missing = [s for s in per_seed if row not in per_seed[s]]
    if missing:
      rows = sorted(next(iter(per_seed.values())))
      raise SystemExit(f"error: {name}: no score row {row!r} (seeds {missing}); its rows: {rows}")
    times = payload.get("times", {})
    models[name] = {
        "config": payload["config"], "overrides": payload.get("overrides", []), "row": row,
        "auc": {s: per_seed[s][row]["auc"] for s in per_seed},
        "per_video_auc": {s: per_seed[s][row]["per_video_auc"] for s in per_seed},
        "auc_smoothed": {s: per_seed[s][row]["auc_smoothed"] for s in per_seed},
        "train_s": {s: (times.get(s) or {}).get("train_s") for s in per_seed}}
    for key in ("auc", "per_video_auc", "auc_smoothed"):
      models[name][key + "_summary"] = _stats(list(models[name][key].values()))
  ref = models[reference]["auc"]
  for name, m in models.items():
    common = sorted(set(m["auc"]) & set(ref), key=int)
    if name == reference or not common:
      continue
    diff = [m["auc"][s] - ref[s] for s in common]
    m["minus_reference"] = {**_stats(diff), "seeds": common, "per_seed": dict(zip(common, diff)),
                            "positive": int(sum(d > 0 for d in diff))}
  return {"reference": reference, "models": models}


def markdown(result: dict) -> str:
  models, ref = result["models"], result["reference"]
  seeds = sorted({s for m in models.values() for s in m["auc"]}, key=int)
  head = ("| model | config, overrides | score | " + " | ".join(f"seed {s}" for s in seeds)
          + f" | mean +- std | per-video | smoothed | - {ref} (paired) | train time per seed |")
  lines = [head, "|" + "---|" * (len(seeds) + 8)]
  for name, m in models.items():
    cells = [f"{m['auc'][s]:.3f}" if s in m["auc"] else "-" for s in seeds]
    a = m["auc_summary"]
    d = m.get("minus_reference")
    diff = (f"{100 * d['mean']:+.1f} +- {100 * d['std']:.1f} pts, > 0 on {d['positive']}/{d['n']}" if d else "-")
    train = [t for t in m["train_s"].values() if t is not None]
    train_txt = f"{min(train) / 60:.0f}-{max(train) / 60:.0f} min" if train else "-"
    config = f"`{m['config']}` " + " ".join(f"`{o}`" for o in m["overrides"])
    lines.append(f"| {name} | {config} | {m['row']} | " + " | ".join(cells)
                 + f" | {a['mean']:.3f} +- {a['std']:.3f} | {m['per_video_auc_summary']['mean']:.3f}"
                 + f" | {m['auc_smoothed_summary']['mean']:.3f} | {diff} | {train_txt} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs", action="append", required=True, metavar="NAME=PATH:ROW",
                 help="a seeds.py JSON and the score row to report (FP, FR, FP&FR, FP&memory, ...)")
  p.add_argument("--reference", required=True, help="the NAME the others are paired against")
  p.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
  args = p.parse_args(argv)
  runs = {}
  for text in args.runs:
    name, path, row = parse_run(text)
    if not pathlib.Path(path).exists():
      raise SystemExit(f"error: {path}: no such seeds.py result")
    runs[name] = (json.loads(pathlib.Path(path).read_text()), row)
  result = compare(runs, args.reference)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  with atomic_open(out.with_suffix(".json"), "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
  table = markdown(result)
  with atomic_open(out.with_suffix(".md"), "w") as f:
    f.write(table)
  print(table, end="")


if __name__ == "__main__":
  main()
