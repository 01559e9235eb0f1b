"""Few-shot seed study (issue 14): `jaxvad meta` over several seeds, then mean +- std of every cell.

For every seed this runs ``jaxvad meta --config C --set seed=S`` into ``ROOT/seed_S`` (a seed whose
``fewshot/fewshot.json`` exists is not rerun; the seed drives pre-training, meta-training, episode and support
sampling), then writes:

- ``OUT.json``: per seed, per support protocol, row and K the AUC; mean, std (ddof 1), min, max; the per-seed
  paired difference Meta - Pre-trained (same seed, same frames) per K with its mean and the number of seeds
  where it is positive; the in-domain reference when the config trains it;
- ``OUT.md``: the tables (mean +- std, n seeds) and the paired differences;
- ``OUT.png``: AUC against K with error bars (one panel per support protocol, the reference as a line);
- ``OUT_meta_loss.png``: the meta-training query loss against step, one line per seed.

Usage:
  JAXVAD_DATA=../shared/data .venv/bin/python experiments/fewshot_seeds.py \\
      --config configs/meta.py:real_ped2 --seeds 0,1,2 --root runs/fewshot_seeds/real_ped2 \\
      --out experiments/results/fewshot_real_ped2
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

from jaxvad.meta import fewshot

ROW_ORDER = ("pretrained", "finetune", "meta_fo", "meta")


def _stats(values: list[float]) -> dict:
  x = np.asarray([v for v in values if v is not None], np.float64)
  if x.size == 0:
    return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
  return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
          "min": float(x.min()), "max": float(x.max()), "n": int(x.size)}


def _by_support(table: dict) -> dict:
  """{protocol: table} from one seed's fewshot.json."""
  return {table.get("support", "test_first"): table, **table.get("by_support", {})}


def aggregate(tables: dict[int, dict]) -> dict:
  """Seed -> fewshot.json  ->  per protocol, row and K: per-seed AUCs and their statistics, paired differences."""
  seeds = sorted(tables)
  first = _by_support(tables[seeds[0]])
  out = {"seeds": seeds, "supports": {}, "reference": None}
  for support, tab in first.items():
    shots = [str(k) for k in tab["shots"]]
    methods = [m for m in ROW_ORDER if m in tab["methods"]] + [m for m in tab["methods"] if m not in ROW_ORDER]
    cells = {}
    for m in methods:
      cells[m] = {}
      for k in shots:
        per_seed = {s: _by_support(tables[s])[support]["auc"][m][k] for s in seeds}
        cells[m][k] = {"per_seed": per_seed, **_stats(list(per_seed.values()))}
    paired = {}
    if "meta" in methods and "pretrained" in methods:
      for k in shots:
        diff = {s: cells["meta"][k]["per_seed"][s] - cells["pretrained"][k]["per_seed"][s] for s in seeds}
        paired[k] = {"per_seed": diff, **_stats(list(diff.values())), "positive": int(sum(d > 0 for d in diff.values()))}
    out["supports"][support] = {"shots": shots, "methods": methods, "auc": cells, "meta_minus_pretrained": paired}
  refs = [tables[s].get("reference") for s in seeds]
  if all(r is not None for r in refs):
    out["reference"] = {"per_seed": {s: r["auc"] for s, r in zip(seeds, refs)}, **_stats([r["auc"] for r in refs])}
  return out


def markdown(agg: dict, title: str) -> str:
  """The tables of `aggregate` as markdown: mean +- std over the seeds."""
  fmt = lambda c: "-" if c["mean"] is None else f"{c['mean']:.3f} +- {c['std']:.3f}"
  lines = [f"## {title}", "", f"seeds: {', '.join(map(str, agg['seeds']))}"]
  for support, sup in agg["supports"].items():
    lines += ["", f"### support: {support}", "", "| row | " + " | ".join(f"K={k}" for k in sup["shots"]) + " |",
              "|---|" + "---|" * len(sup["shots"])]
    for m in sup["methods"]:
      lines.append(f"| {fewshot.LABELS.get(m, m)} | " + " | ".join(fmt(sup["auc"][m][k]) for k in sup["shots"]) + " |")
    if agg["reference"] is not None:
      lines.append("| In-domain reference | " + " | ".join(fmt(agg["reference"]) for _ in sup["shots"]) + " |")
    if sup["meta_minus_pretrained"]:
      lines += ["", "Meta - Pre-trained, paired by seed: " + "; ".join(
          f"K={k}: {fmt(d)} (positive in {d['positive']}/{d['n']})" for k, d in sup["meta_minus_pretrained"].items())]
  return "\n".join(lines) + "\n"


def plot(agg: dict, path: pathlib.Path, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  supports = list(agg["supports"])
  fig, axes = plt.subplots(1, len(supports), figsize=(5 * len(supports), 4), squeeze=False)
  for ax, support in zip(axes[0], supports):
    sup = agg["supports"][support]
    ks = [int(k) for k in sup["shots"]]
    for m in sup["methods"]:
      mean = [sup["auc"][m][k]["mean"] for k in sup["shots"]]
      std = [sup["auc"][m][k]["std"] for k in sup["shots"]]
      ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=fewshot.LABELS.get(m, m))
    if agg["reference"] is not None:
      ax.axhline(agg["reference"]["mean"], color="k", ls="--", label="In-domain reference")
    ax.set(xlabel="K (shots)", ylabel="frame AUC", title=f"{title}: support {support}", xticks=ks)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_meta_loss(runs: dict[int, pathlib.Path], path: pathlib.Path) -> bool:
  """Meta-training curves per seed (from ``meta/metrics.jsonl``); False when none exists.

  Left: the query loss after adaptation (the meta loss). Right: the adaptation gain, query loss before minus
  after the inner step(s): what the shots buy on the source episodes.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, gain) = plt.subplots(1, 2, figsize=(11, 4))
  drawn = False
  for seed, run in sorted(runs.items()):
    f = run / "meta" / "metrics.jsonl"
    if not f.exists():
      continue
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "meta_loss" in r]
    ax.plot([r["step"] for r in rows], [r["meta_loss"] for r in rows], label=f"seed {seed}")
    with_before = [r for r in rows if "query_loss_before" in r]
    gain.plot([r["step"] for r in with_before], [r["query_loss_before"] - r["meta_loss"] for r in with_before],
              label=f"seed {seed}")
    drawn = True
  ax.set(xlabel="meta-training step", ylabel="query loss after adaptation", title="meta loss")
  gain.set(xlabel="meta-training step", ylabel="query loss before - after", title="adaptation gain on sources")
  gain.set_yscale("symlog", linthresh=1e-5)  # A negative gain (the step hurt) stays visible.
  if drawn:
    ax.legend()
    gain.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
  plt.close(fig)
  return drawn


def run_seconds(run: pathlib.Path) -> float | None:
  """Wall time of a finished seed from its files: pre-training's config record to the written table."""
  start, end = run / "pretrain" / "config.json", run / "fewshot" / "fewshot.json"
  if not (start.exists() and end.exists()):
    return None
  return round(end.stat().st_mtime - start.stat().st_mtime, 1)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--root", required=True, help="work directories ROOT/seed_S")
  p.add_argument("--out", required=True, help="output path without extension (.json, .md, .png written)")
  p.add_argument("--set", action="append", default=[], help="config overrides passed to jaxvad meta")
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  root, out = pathlib.Path(args.root), pathlib.Path(args.out)
  runs, tables = {}, {}
  for seed in seeds:
    run = runs[seed] = root / f"seed_{seed}"
    result = run / "fewshot" / "fewshot.json"
    if not result.exists():
      cmd = [sys.executable, "-m", "jaxvad.cli", "meta", "--config", args.config, "--workdir", str(run),
             "--no-progress", "--set", f"seed={seed}"]
      for item in args.set:
        cmd += ["--set", item]
      print("running", " ".join(cmd), flush=True)
      subprocess.run(cmd, check=True)
    tables[seed] = json.loads(result.read_text())
  agg = aggregate(tables)
  agg.update(config=args.config, overrides=args.set,
             wall_s={s: run_seconds(r) for s, r in runs.items()},
             wall_note="per seed, pre-training's first record to the written table (file times; data loading "
                       "and the checks before it not counted)")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(agg, indent=2))
  text = markdown(agg, f"{args.config} ({len(seeds)} seeds)")
  out.with_suffix(".md").write_text(text)
  plot(agg, out.with_suffix(".png"), args.config.rpartition(":")[2] or args.config)
  plot_meta_loss(runs, out.parent / f"{out.name}_meta_loss.png")
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
