"""Why does few-shot adaptation not raise the AUC? Measurements on a finished `jaxvad meta` workdir (issue 14).

For the meta-learned initialisation (Meta-SGD steps with the learned alpha, times a scale) and the pre-trained
one (plain gradient steps at the selected fine-tuning step size, times a scale), per support protocol and K:

- ``support_loss`` before -> after: does the inner step fit the shots at all?
- ``normal_loss`` before -> after: the MPN loss on 64 OTHER normal windows of the target camera (its training
  videos, disjoint from every train_random shot): does what was learned from the shots carry to the camera?
- on the scored test frames: mean PSNR of normal and of abnormal frames, their gap (normal - abnormal), and the
  frame AUC of the combined score, of the PSNR term alone and of the feature-error term alone;
- ``drift``: |theta_adapted - theta| / |theta| of the DPU and of the head (mean over the adapted models);
- ``parts``: per adapted part (DPU, head) its parameter norm, its gradient norm on K training shots of the
  target camera, its mean step size (learned alpha, or the fine-tuning lr) and the norm of one step;
- the in-domain reference (``workdir/reference``), un-adapted, on the same frames: how its score terms behave.

This reads the target's TEST LABELS: it analyses a finished run and must never be used to choose a setting
(the tables' fine-tuning settings are chosen on held-out source episodes, `jaxvad/meta/finetune_select.py`).

Usage:
  JAXVAD_DATA=../shared/data python experiments/fewshot_analysis.py \\
      --workdir runs/fewshot_seeds/real_ped2/seed_0 --k 10 --scales 0.5,1,4,16 \\
      --out experiments/results/fewshot_analysis_real_ped2_seed0.json
Writes the JSON and a markdown table beside it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from jaxvad import models, run_record  # noqa: E402
from jaxvad.data import sources  # noqa: E402
from jaxvad.data.types import Split  # noqa: E402
from jaxvad.evaluate import report, scoring  # noqa: E402
from jaxvad.meta import core, fewshot  # noqa: E402
from jaxvad.meta import train as meta_train_lib  # noqa: E402
from jaxvad.train import checkpoint as ckpt_lib  # noqa: E402
from jaxvad.train import loop  # noqa: E402
from jaxvad.train import mesh as mesh_lib  # noqa: E402
from jaxvad.utils import atomic_write_json, atomic_write_text  # noqa: E402

NUM_NORMAL = 64  # Held-out normal windows of the target camera for ``normal_loss``.


def _norm(tree) -> float:
  return float(np.sqrt(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(tree))))


def drift(theta, adapted) -> dict:
  """{part: |adapted - theta| / |theta|} per top-level part of theta (dpu, head)."""
  return {k: _norm(jax.tree.map(lambda a, b: a - b, adapted[k], theta[k])) / max(_norm(theta[k]), 1e-12)
          for k in theta}


def term_aucs(vs: scoring.VideoScores, weights: dict) -> dict:
  """Frame AUC of the combined score and of each of its terms alone."""
  out = {"auc": scoring.evaluate_scores(vs, score_weights=weights)["auc"]}
  for name in weights:
    out[f"auc_{name}"] = scoring.evaluate_scores(vs, score_weights={name: 1.0})["auc"]
  return out


def psnr_by_label(vs: scoring.VideoScores) -> dict:
  """Mean PSNR of normal and abnormal frames, pooled, and the gap within videos (those holding both classes)."""
  psnr = np.concatenate(vs.scores["psnr"])
  lab = np.concatenate(vs.labels) > 0
  normal, abnormal = float(psnr[~lab].mean()), float(psnr[lab].mean())
  within = [float(p[l == 0].mean() - p[l > 0].mean()) for p, l in zip(vs.scores["psnr"], vs.labels)
            if (l > 0).any() and (l == 0).any()]
  return {"psnr_normal": normal, "psnr_abnormal": abnormal, "psnr_gap": normal - abnormal,
          "psnr_gap_within": float(np.mean(within)) if within else None}


def load_reference(config, workdir):
  """theta of the in-domain reference model (``workdir/reference``: trained on the target's training split)."""
  ref = meta_train_lib.pretrain_config(config)
  ref.data = config.target.copy_and_resolve_references()
  _, _, state = loop.create_train_state(ref, mesh_lib.make_mesh(1), tuple(config.data.size))
  ckpt = ckpt_lib.Checkpointer(pathlib.Path(workdir) / "reference" / "checkpoints")
  restored = ckpt.restore(state)
  ckpt.close()
  return None if restored is None else jax.device_get(restored.params)


def analyse(config, workdir, *, k: int, scales, protocols, progress=print) -> dict:
  """Every (init, protocol, scale) row at shot count ``k``, plus the un-adapted rows (K = 0)."""
  t = config.data.t
  target = sources.load(config.target, "testing", progress=False)
  target_train = sources.load(config.target, "training", progress=False)
  theta_meta, alpha_meta, frozen = meta_train_lib.load_meta(config, workdir)
  theta_pre = core.split_params(meta_train_lib.load_pretrained(config, workdir))[0]
  table = json.loads((pathlib.Path(workdir) / "fewshot" / "fewshot.json").read_text())
  sel = (table.get("finetune_selection") or {}).get("pretrained")
  pre_lr, pre_steps = (sel["lr"], sel["steps"]) if sel and sel["lr"] > 0 else (
      config.fewshot.finetune_lr, config.fewshot.finetune_steps)
  mdef = models.build(config.model)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  loss = jax.jit(task_loss)
  adapter = fewshot.Adapter(mdef, config.model, frozen)
  steps_of = {"meta": int(config.meta.inner_steps), "pretrained": int(pre_steps)}
  adapt = {n: jax.jit(lambda th, al, sup, n=n: core.adapt(task_loss, th, al, frozen, sup, num_steps=n))
           for n in set(steps_of.values())}
  inits = {"meta": (theta_meta, alpha_meta),
           "pretrained": (theta_pre, jax.tree.map(lambda p: jnp.full_like(p, pre_lr), theta_pre))}
  weights = dict(config.eval.score_weights)
  first_window = max(int(s) for s in config.fewshot.shots)
  scenes = sorted({v.scene for v in target.videos})
  normal = {}  # Per camera: NUM_NORMAL training windows disjoint from every train_random shot (K <= first_window).
  for scene in scenes:
    order = fewshot.train_support_windows(target_train, scene, t=t, k=first_window + NUM_NORMAL, seed=config.seed)
    normal[scene] = order[first_window:]
  rows = []
  # Per adapted part: parameter norm, gradient norm on K training shots of the first camera, the learned step size.
  shots = fewshot.train_support_windows(target_train, scenes[0], t=t, k=first_window, seed=config.seed)
  parts = {}
  for init, (th0, al0) in inits.items():
    grad = jax.grad(task_loss)(th0, frozen, shots)
    parts[init] = {p: {"size": int(sum(np.size(x) for x in jax.tree.leaves(th0[p]))), "param_norm": _norm(th0[p]),
                       "grad_norm": _norm(grad[p]),
                       "step_mean_abs": float(np.mean(np.concatenate([np.ravel(np.abs(a)) for a in
                                                                      jax.tree.leaves(al0[p])]))),
                       "step_norm": _norm(jax.tree.map(lambda a, g: a * g, al0[p], grad[p]))} for p in th0}
    progress(f"{init}: " + "; ".join(f"{p} |theta| {v['param_norm']:.3g} |grad| {v['grad_norm']:.3g} "
                                     f"|step| {v['step_norm']:.3g}" for p, v in parts[init].items()))

  def run(init, protocol, scale, kk):
    th0, al0 = inits[init]
    alpha = jax.tree.map(lambda a: a * scale, al0)
    parts, sup_before, sup_after, norm_before, norm_after, drifts, cache = [], [], [], [], [], [], {}
    for i, video in enumerate(target.videos):
      if kk == 0:
        support, adapted = None, th0
      else:
        if protocol == "test_first":
          support = fewshot.first_k_windows(video, t, kk)
          key = ("video", i)
        else:
          support = fewshot.train_support_windows(target_train, video.scene, t=t, k=kk, seed=config.seed)
          key = ("scene", video.scene)
        if key not in cache:
          cache[key] = adapt[steps_of[init]](th0, alpha, support)
        adapted = cache[key]
        sup_before.append(float(loss(th0, frozen, support)))
        sup_after.append(float(loss(adapted, frozen, support)))
        drifts.append(drift(th0, adapted))
      norm_before.append(float(loss(th0, frozen, normal[video.scene])))
      norm_after.append(float(loss(adapted, frozen, normal[video.scene])))
      one = Split(target.dataset, target.split, [video])
      parts.append(scoring.score_split(one, adapter.predict_fn(adapted), t=t, batch_size=config.fewshot.batch_size,
                                       first_window=first_window, progress=False))
    vs = scoring.merge_video_scores(parts)
    row = {"init": init, "protocol": protocol if kk else "-", "K": kk, "scale": scale if kk else 0.0,
           "step": (f"alpha x {scale:g}" if init == "meta" else f"lr {pre_lr:g} x {scale:g}, {pre_steps} steps")
           if kk else "none",
           **term_aucs(vs, weights), **psnr_by_label(vs),
           "normal_loss_before": float(np.mean(norm_before)), "normal_loss_after": float(np.mean(norm_after))}
    if kk:
      row.update(support_loss_before=float(np.mean(sup_before)), support_loss_after=float(np.mean(sup_after)),
                 **{f"drift_{p}": float(np.mean([d[p] for d in drifts])) for p in drifts[0]})
    rows.append(row)
    progress(f"{init:10s} {row['protocol']:12s} K={kk:2d} {row['step']:28s} AUC {row['auc']:.4f} "
             f"(psnr {row['auc_psnr']:.4f}) gap {row['psnr_gap']:.3f} dB normal loss "
             f"{row['normal_loss_before']:.5f} -> {row['normal_loss_after']:.5f}")

  ref_params = load_reference(config, workdir)
  if ref_params is not None:  # The in-domain reference, un-adapted: how its score terms behave on the same frames.
    theta_ref, frozen_ref = meta_train_lib.split_by_config(config, ref_params)
    inits["reference"] = (theta_ref, None)
    adapter_main, frozen_main = adapter, frozen
    adapter, frozen = fewshot.Adapter(mdef, config.model, frozen_ref), frozen_ref
    run("reference", "-", 0.0, 0)
    adapter, frozen = adapter_main, frozen_main
    del inits["reference"]
  for init in inits:
    run(init, "-", 0.0, 0)
    for protocol in protocols:
      for scale in scales:
        run(init, protocol, scale, k)
  return {"workdir": str(workdir), "k": k, "scales": list(scales), "protocols": list(protocols),
          "pretrained_finetune": {"lr": pre_lr, "steps": pre_steps}, "meta_inner_steps": steps_of["meta"],
          "alpha_mean_abs": float(np.mean([np.mean(np.abs(a)) for a in jax.tree.leaves(alpha_meta)])),
          "num_normal_windows": NUM_NORMAL, "uses_test_labels": True, "parts": parts, "rows": rows}


COLUMNS = ["init", "protocol", "K", "step", "auc", "auc_psnr", "auc_feature_error", "psnr_normal", "psnr_abnormal",
           "psnr_gap", "psnr_gap_within", "support_loss_before", "support_loss_after", "normal_loss_before", "normal_loss_after",
           "drift_dpu", "drift_head"]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", required=True, help="a finished `jaxvad meta` workdir")
  ap.add_argument("--k", type=int, default=10, help="shots (<= max of the run's fewshot.shots)")
  ap.add_argument("--scales", default="0.5,1,4,16", help="step-size multipliers")
  ap.add_argument("--protocols", default="test_first,train_random")
  ap.add_argument("--out", required=True, help="JSON path (the .md table is written beside it)")
  args = ap.parse_args(argv)
  config = run_record.load(args.workdir)
  if config is None:
    raise SystemExit(f"{args.workdir} has no config.json: not a jaxvad workdir")
  start = time.perf_counter()
  res = analyse(config, args.workdir, k=args.k, scales=[float(s) for s in args.scales.split(",")],
                protocols=args.protocols.split(","))
  res["seconds"] = round(time.perf_counter() - start, 1)
  out = pathlib.Path(args.out)
  atomic_write_json(out, res, indent=2)
  cols = [c for c in COLUMNS if any(c in r for r in res["rows"])]
  rows = [{c: r.get(c, "") for c in cols} for r in res["rows"]]
  atomic_write_text(out.with_suffix(".md"), report.format_table(rows, cols) + "\n")
  print(f"wrote {out} and {out.with_suffix('.md')} in {res['seconds']} s")


if __name__ == "__main__":
  main()
