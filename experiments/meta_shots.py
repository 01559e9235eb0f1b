"""Meta-training that matches testing (issue 14, item 5): K drawn per meta-batch vs one model per K.

For finished `jaxvad meta` workdirs (one per seed, e.g. from `experiments/fewshot_seeds.py`) whose config draws K per
meta-batch from ``meta.shots`` (the "drawn" schedule), this meta-trains, from the SAME pre-trained model, one model per
tested K > 0 with K fixed (``meta.shots = ()``, ``meta.k_support = K``; same steps, episodes, Q and seed), in
``WORKDIR/meta_shots/fixed_K``, and measures for every schedule:

- the CHOICE criterion, label-free: the query loss after Meta-SGD adaptation on held-out SOURCE episodes (the tails
  the run held out for `finetune_select`) with K support windows, per tested K; one model per K wins at K when its
  K-model's held-out loss is lower than the drawn model's;
- the meta-training wall time and the last logged meta loss;
- for information only (reads Ped2 test labels, never used to choose): the Ped2 frame AUC of the Meta row at
  K = 0 / 1 / 5 / 10 for both support protocols, on the same frames as the run's table. "One model per K" is the
  row that, at each K, uses the model meta-trained with that K.

Usage:
  JAXVAD_DATA=../shared/data python experiments/meta_shots.py \\
      --workdirs runs/fewshot_seeds/real_ped2/seed_0,runs/fewshot_seeds/real_ped2/seed_1 \\
      --out experiments/results/meta_shots_real_ped2
Writes OUT.json and OUT.md. A seed whose entry is already in OUT.json is not recomputed.
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
from jaxvad import models, run_record  # noqa: E402
from jaxvad.data import multisource, sources  # noqa: E402
from jaxvad.meta import core, fewshot, finetune_select  # noqa: E402
from jaxvad.meta import protocol  # noqa: E402
from jaxvad.meta import train as meta_train_lib  # noqa: E402
from jaxvad.utils import atomic_write_json, atomic_write_text  # noqa: E402

NUM_EPISODES = 16  # Held-out source episodes per K for the choice criterion.


def heldout_loss(config, task_loss, adapter, theta, alpha, frozen, heldout, k: int) -> dict:
  """Mean query loss on held-out source episodes with K support windows, before and after adaptation."""
  sampler = finetune_select.validation_sampler(heldout, t=config.data.t, k_support=k, n_query=config.meta.n_query,
                                               seed=config.seed)
  eps = sampler.sample(0, NUM_EPISODES)  # support [E, K, T+1, H, W, 3], query [E, Q, T+1, H, W, 3]
  loss = jax.jit(task_loss)
  before, after = [], []
  for e in range(NUM_EPISODES):
    before.append(float(loss(theta, frozen, eps["query"][e])))
    after.append(float(loss(adapter.adapt("meta", theta, alpha, eps["support"][e]), frozen, eps["query"][e])))
  return {"before": float(np.mean(before)), "after": float(np.mean(after))}


def meta_row_aucs(cfg, adapter, theta, alpha, target, target_train, supports) -> dict:
  """{support: {K: AUC}} of the Meta row at ``fewshot.shots`` (K = 0 scored once), as the run's table scores it."""
  out, unadapted = {}, {}
  for support in supports:
    tab = fewshot.fewshot_table(adapter, theta, alpha, target, t=cfg.data.t, shots=cfg.fewshot.shots,
                                methods=("meta",), batch_size=cfg.fewshot.batch_size,
                                score_weights=dict(cfg.eval.score_weights), progress=False, support=support,
                                train_split=target_train, seed=cfg.seed, unadapted=unadapted)
    out[support] = {int(k): v for k, v in tab["auc"]["meta"].items()}
  return out


def last_meta_loss(metrics: pathlib.Path) -> float | None:
  lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
  vals = [r["meta_loss"] for r in lines if "meta_loss" in r][-3:]
  return float(np.mean(vals)) if vals else None


def study_seed(workdir: pathlib.Path, *, progress=print) -> dict:
  config = run_record.load(workdir)
  if config is None:
    raise SystemExit(f"{workdir} has no config.json: not a jaxvad workdir")
  drawn = tuple(int(k) for k in config.meta.get("shots", ()))
  if not drawn:
    raise SystemExit(f"{workdir}: meta.shots is empty (K fixed at {config.meta.k_support}); nothing to compare")
  source = multisource.load(config.data, "training", progress=False)
  source, heldout = finetune_select.holdout_tail(source, float(config.fewshot.select.val_fraction))
  target = sources.load(config.target, "testing", progress=False)
  target_train = sources.load(config.target, "training", progress=False)
  params = meta_train_lib.load_pretrained(config, workdir)
  mdef = models.build(config.model)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  table = json.loads((workdir / "fewshot" / "fewshot.json").read_text())
  tables = {table.get("support", "test_first"): table, **table.get("by_support", {})}
  schedules = {"drawn": {"config": config, "dir": workdir,
                         "auc": {s: {int(k): v for k, v in tab["auc"]["meta"].items()} for s, tab in tables.items()},
                         "meta_loss": last_meta_loss(workdir / "meta" / "metrics.jsonl")}}
  for k in drawn:
    cfg = copy.deepcopy(config)
    cfg.meta.shots = ()
    cfg.meta.k_support = k
    schedules[f"fixed_{k}"] = {"config": cfg, "dir": workdir / "meta_shots" / f"fixed_{k}"}
  out = {"workdir": str(workdir), "seed": int(config.seed), "drawn_shots": list(drawn), "schedules": {}}
  for name, sch in schedules.items():
    cfg = sch["config"]
    start = time.perf_counter()
    theta, alpha, frozen = meta_train_lib.meta_train(cfg, sch["dir"], source, params, progress=False)
    train_s = time.perf_counter() - start
    adapter = protocol._adapter(cfg, frozen)  # pylint: disable=protected-access
    entry = {"k_support": list(drawn) if name == "drawn" else int(cfg.meta.k_support),
             "meta_train_s_this_call": round(train_s, 1),
             "heldout_source": {k: heldout_loss(cfg, task_loss, adapter, theta, alpha, frozen, heldout, k)
                                for k in drawn}}
    if "auc" in sch:  # The run's own table (same frames).
      entry["auc"], entry["meta_loss"] = sch["auc"], sch["meta_loss"]
    else:
      entry["meta_loss"] = last_meta_loss(sch["dir"] / "meta" / "metrics.jsonl")
      entry["auc"] = meta_row_aucs(cfg, adapter, theta, alpha, target, target_train, tuple(tables))
    out["schedules"][name] = entry
    progress(f"seed {config.seed} {name}: held-out source query loss after adaptation "
             + ", ".join(f"K={k} {v['after']:.5f}" for k, v in entry["heldout_source"].items())
             + "; Ped2 AUC " + "; ".join(f"{s} " + " ".join(f"{v:.3f}" for v in a.values())
                                         for s, a in entry["auc"].items()))
  # One model per K: at each K its own fixed-K model; chosen over "drawn" where its held-out loss is lower.
  per_k = {}
  for k in drawn:
    own, dr = out["schedules"][f"fixed_{k}"], out["schedules"]["drawn"]
    per_k[k] = {"heldout_after_drawn": dr["heldout_source"][k]["after"],
                "heldout_after_per_k": own["heldout_source"][k]["after"],
                "auc_drawn": {s: dr["auc"][s][k] for s in dr["auc"]},
                "auc_per_k": {s: own["auc"][s][k] for s in own["auc"]}}
  out["per_k"] = per_k
  return out


def summarise(seeds: dict) -> dict:
  """Per K: held-out loss and AUC of drawn vs one model per K, mean +- std over seeds, wins per seed."""
  rows = {}
  any_seed = next(iter(seeds.values()))
  for k in any_seed["drawn_shots"]:
    ks = str(k)
    r = {}
    for what in ("heldout_after_drawn", "heldout_after_per_k"):
      v = [s["per_k"][ks][what] for s in seeds.values()]
      r[what] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
    rel = [100 * (s["per_k"][ks]["heldout_after_per_k"] / s["per_k"][ks]["heldout_after_drawn"] - 1)
           for s in seeds.values()]
    r["per_k_minus_drawn_pct"] = {"mean": float(np.mean(rel)),
                                  "std": float(np.std(rel, ddof=1)) if len(rel) > 1 else 0.0}
    r["per_k_lower_heldout_loss_seeds"] = sum(s["per_k"][ks]["heldout_after_per_k"]
                                              < s["per_k"][ks]["heldout_after_drawn"] for s in seeds.values())
    for support in any_seed["per_k"][ks]["auc_drawn"]:
      for what in ("auc_drawn", "auc_per_k"):
        v = [s["per_k"][ks][what][support] for s in seeds.values()]
        r[f"{what}_{support}"] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
    rows[ks] = r
  return rows


def markdown(res: dict) -> str:
  lines = [f"Seeds {', '.join(str(s) for s in res['seeds'])}. Held-out SOURCE query loss after Meta-SGD adaptation "
           f"({NUM_EPISODES} episodes per K; the label-free choice criterion) and, for information, the Ped2 frame "
           "AUC of the Meta row (mean +- std over seeds).", "",
           "| K | held-out loss, drawn | held-out loss, one model per K | per-K vs drawn | "
           "seeds where per-K is lower | "
           "AUC test_first drawn | AUC test_first per-K | AUC train_random drawn | AUC train_random per-K |",
           "|---|---|---|---|---|---|---|---|---|"]

  def f(d, p=5):
    return f"{d['mean']:.{p}f} +- {d['std']:.{p}f}"

  n = len(res["seeds"])
  for k, r in res["summary"].items():
    rel = r["per_k_minus_drawn_pct"]
    lines.append(f"| {k} | {f(r['heldout_after_drawn'])} | {f(r['heldout_after_per_k'])} | "
                 f"{rel['mean']:+.2f} +- {rel['std']:.2f} % | {r['per_k_lower_heldout_loss_seeds']} of {n} | "
                 f"{f(r['auc_drawn_test_first'], 3)} | "
                 f"{f(r['auc_per_k_test_first'], 3)} | {f(r['auc_drawn_train_random'], 3)} | "
                 f"{f(r['auc_per_k_train_random'], 3)} |")
  lines += ["", "Per seed and schedule (Ped2 AUC of the Meta row at K = 0 / 1 / 5 / 10; meta-training time of this "
            "call, 0 when resumed):", "", "| seed | schedule | test_first | train_random | last meta loss | "
            "meta-train s |", "|---|---|---|---|---|---|"]
  for s, d in res["per_seed"].items():
    for name, e in d["schedules"].items():
      aucs = {sp: " / ".join(f"{v:.3f}" for v in a.values()) for sp, a in e["auc"].items()}
      ml = f"{e['meta_loss']:.5f}" if e.get("meta_loss") is not None else "-"
      lines.append(f"| {s} | {name} | {aucs.get('test_first', '-')} | {aucs.get('train_random', '-')} | {ml} | "
                   f"{e['meta_train_s_this_call']} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdirs", required=True, help="comma-separated finished `jaxvad meta` workdirs (one per seed)")
  ap.add_argument("--out", required=True, help="output prefix: OUT.json and OUT.md")
  args = ap.parse_args(argv)
  out = pathlib.Path(args.out)
  path = out.with_suffix(".json")
  res = json.loads(path.read_text()) if path.exists() else {"per_seed": {}}
  for wd in args.workdirs.split(","):
    wd = pathlib.Path(wd)
    cfg = run_record.load(wd)
    if cfg is None:
      raise SystemExit(f"{wd} has no config.json: not a jaxvad workdir")
    if str(cfg.seed) in res["per_seed"]:
      continue
    start = time.perf_counter()
    entry = json.loads(json.dumps(study_seed(wd)))  # str keys, as when re-read.
    entry["seconds"] = round(time.perf_counter() - start, 1)
    res["per_seed"][str(cfg.seed)] = entry
    write(res, out)
    print(f"seed {cfg.seed} done in {entry['seconds']} s; wrote {path}")
  if res["per_seed"]:
    write(res, out)  # Also refreshes the summary and table of seeds computed before.


def write(res: dict, out: pathlib.Path) -> None:
  res["seeds"] = sorted(int(s) for s in res["per_seed"])
  res["summary"] = summarise(res["per_seed"])
  res["uses_test_labels"] = "AUC columns only, for information; the choice uses held-out source episodes"
  atomic_write_json(out.with_suffix(".json"), res, indent=2)
  atomic_write_text(out.with_suffix(".md"), markdown(res))


if __name__ == "__main__":
  main()
