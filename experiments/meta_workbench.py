"""The meta-learning workbench table (issue 18, item 4): meta-learner x adapted set on the real-camera protocol.

For finished `jaxvad meta` workdirs of `configs/meta.py:real_ped2` (one per seed, e.g. from
`experiments/fewshot_seeds.py`), this meta-trains, from each seed's SAME pre-trained model and with the config's
steps, episodes, K schedule and seed, one model per variant ``learner:adapted`` (``meta.learner``, ``meta.adapted``;
docs/meta.md) in ``WORKDIR/workbench/<learner>_<adapted>``, and records per variant:

- the meta-training wall time of this call and the last logged meta loss;
- the held-out SOURCE query loss before / after adaptation at each tested K (label-free, as `meta_shots.py`);
- the Ped2 frame AUC of the adapted model at K = 0 / 1 / 5 / 10 for both support protocols, on the same frames as
  the run's table. The run's own model is the ``meta_sgd:dpu_head`` row (read from its table, not retrained).

Step time and memory of each learner / adapted set are `experiments/meta_learners_bench.py`'s
(`experiments/results/meta_learners.json`, same model size); the online row is `experiments/online_vs_oneshot.py`'s.

Usage:
  JAXVAD_DATA=../shared/data python experiments/meta_workbench.py --workdirs runs/fewshot_seeds/real_ped2/seed_0 \\
      --variants maml:dpu_head,fomaml:dpu_head,per_tensor:dpu_head,reptile:dpu_head \\
      --out experiments/results/meta_workbench_real_ped2_learners
Writes OUT.json and OUT.md; a (seed, variant) already in OUT.json is not recomputed.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import time

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from experiments import meta_shots  # noqa: E402
from jaxvad import models, run_record  # noqa: E402
from jaxvad.data import multisource, sources  # noqa: E402
from jaxvad.meta import core, finetune_select, protocol  # noqa: E402
from jaxvad.meta import train as meta_train_lib  # noqa: E402
from jaxvad.utils import atomic_write_json, atomic_write_text  # noqa: E402

RUN_VARIANT = "meta_sgd:dpu_head"  # What the configs meta-train: read from the run's own table.


def _load(workdir: pathlib.Path):
  config = run_record.load(workdir)
  if config is None:
    raise SystemExit(f"{workdir} has no config.json: not a jaxvad workdir")
  source = multisource.load(config.data, "training", progress=False)
  source, heldout = finetune_select.holdout_tail(source, float(config.fewshot.select.val_fraction))
  return config, source, heldout


def run_variant(config, workdir, source, heldout, target, target_train, params, variant: str) -> dict:
  learner, adapted = variant.split(":")
  cfg = copy.deepcopy(config)
  cfg.meta.learner, cfg.meta.adapted = learner, adapted
  shots = [int(k) for k in (cfg.meta.get("shots", ()) or (cfg.meta.k_support,))]
  table = json.loads((workdir / "fewshot" / "fewshot.json").read_text())
  tables = {table.get("support", "test_first"): table, **table.get("by_support", {})}
  out_dir = workdir if variant == RUN_VARIANT else workdir / "workbench" / variant.replace(":", "_")
  start = time.perf_counter()
  theta, alpha, frozen = meta_train_lib.meta_train(cfg, out_dir, source, params, progress=False)
  entry = {"learner": learner, "adapted": adapted, "meta_train_s_this_call": round(time.perf_counter() - start, 1),
           "meta_loss": meta_shots.last_meta_loss(out_dir / "meta" / "metrics.jsonl"),
           "theta_params": int(sum(np.size(x) for x in jax.tree.leaves(theta)))}
  mdef = models.build(cfg.model)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, cfg.model)
  adapter = protocol._adapter(cfg, frozen)  # pylint: disable=protected-access
  entry["heldout_source"] = {k: meta_shots.heldout_loss(cfg, task_loss, adapter, theta, alpha, frozen, heldout, k)
                             for k in shots}
  if variant == RUN_VARIANT:
    entry["auc"] = {s: {int(k): v for k, v in tab["auc"]["meta"].items()} for s, tab in tables.items()}
  else:
    entry["auc"] = meta_shots.meta_row_aucs(cfg, adapter, theta, alpha, target, target_train, tuple(tables))
  return json.loads(json.dumps(entry))


def summarise(per_seed: dict) -> dict:
  """variant -> support -> K -> mean / std / n over the seeds that have it."""
  out = {}
  variants = sorted({v for s in per_seed.values() for v in s})
  for v in variants:
    have = [s[v] for s in per_seed.values() if v in s]
    out[v] = {"seeds": len(have), "meta_train_s": float(np.mean([e["meta_train_s_this_call"] for e in have]))}
    for support in have[0]["auc"]:
      out[v][support] = {}
      for k in have[0]["auc"][support]:
        x = [e["auc"][support][k] for e in have]
        out[v][support][k] = {"mean": float(np.mean(x)), "std": float(np.std(x, ddof=1)) if len(x) > 1 else 0.0}
  return out


def markdown(res: dict) -> str:
  lines = [f"Seeds: {', '.join(res['per_seed'])}. Ped2 frame AUC of the adapted model (mean +- std over seeds where "
           "more than one), K = 0 / 1 / 5 / 10.", "",
           "| learner | adapted | seeds | test_first | train_random | meta-train s (this call) |",
           "|---|---|---|---|---|---|"]
  for v, r in res["summary"].items():
    learner, adapted = v.split(":")
    cells = {s: " / ".join(f"{c['mean']:.3f}" + (f" +- {c['std']:.3f}" if r["seeds"] > 1 else "")
                           for c in r[s].values()) for s in ("test_first", "train_random") if s in r}
    lines.append(f"| {learner} | {adapted} | {r['seeds']} | {cells.get('test_first', '-')} | "
                 f"{cells.get('train_random', '-')} | {r['meta_train_s']:.0f} |")
  lines += ["", "Held-out source query loss before -> after adaptation at K = 1 / 10 (label-free), per seed:", "",
            "| seed | variant | K=1 | K=10 | theta params |", "|---|---|---|---|---|"]
  for s, d in res["per_seed"].items():
    for v, e in d.items():
      hs = e["heldout_source"]
      lines.append(f"| {s} | {v} | {hs['1']['before']:.5f} -> {hs['1']['after']:.5f} | "
                   f"{hs['10']['before']:.5f} -> {hs['10']['after']:.5f} | {e['theta_params']:,} |")
  return "\n".join(lines) + "\n"


def write(res: dict, out: pathlib.Path) -> None:
  res["summary"] = summarise(res["per_seed"])
  res["uses_test_labels"] = "AUC columns: a comparison, never a choice"
  atomic_write_json(out.with_suffix(".json"), res, indent=2)
  atomic_write_text(out.with_suffix(".md"), markdown(res))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdirs", default="", help="comma-separated finished real_ped2 workdirs (one per seed)")
  ap.add_argument("--variants", default="", help="comma-separated learner:adapted pairs")
  ap.add_argument("--out", required=True, help="output prefix: OUT.json and OUT.md")
  ap.add_argument("--merge", default="", help="comma-separated JSONs of earlier calls (e.g. run in parallel) whose "
                  "(seed, variant) entries are merged into OUT first")
  args = ap.parse_args(argv)
  out = pathlib.Path(args.out)
  path = out.with_suffix(".json")
  res = json.loads(path.read_text()) if path.exists() else {"per_seed": {}}
  for other in filter(None, args.merge.split(",")):
    for seed, variants in json.loads(pathlib.Path(other).read_text())["per_seed"].items():
      for v, entry in variants.items():
        res["per_seed"].setdefault(seed, {}).setdefault(v, entry)
  if res["per_seed"]:
    write(res, out)
  for wd in filter(None, args.workdirs.split(",")):
    wd = pathlib.Path(wd)
    config, source, heldout = _load(wd)
    seed = str(config.seed)
    todo = [v for v in args.variants.split(",") if v not in res["per_seed"].get(seed, {})]
    if not todo:
      continue
    target = sources.load(config.target, "testing", progress=False)
    target_train = sources.load(config.target, "training", progress=False)
    params = meta_train_lib.load_pretrained(config, wd)
    for v in todo:
      entry = run_variant(config, wd, source, heldout, target, target_train, params, v)
      res["per_seed"].setdefault(seed, {})[v] = entry
      write(res, out)
      print(f"seed {seed} {v}: " + "; ".join(f"{s} " + " ".join(f"{x:.3f}" for x in a.values())
                                          for s, a in entry["auc"].items()), flush=True)


if __name__ == "__main__":
  main()
