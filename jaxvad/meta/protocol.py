"""The cross-dataset few-shot protocol (MPN Table 2) and single-video adaptation, end to end."""

from __future__ import annotations

import copy
import logging
import pathlib

import jax
import numpy as np

from jaxvad import models, preflight, run_record
from jaxvad.data import multisource, sources
from jaxvad.data.layout import VideoEntry, list_frames
from jaxvad.data.prepare import read_frames
from jaxvad.data.types import Split, VideoData
from jaxvad.evaluate import report, scoring
from jaxvad.meta import checks, core, fewshot, finetune_select
from jaxvad.meta import train as meta_train_lib
from jaxvad.train import loop
from jaxvad.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS_NOTE = ("frame-level AUC pooled over the target's test videos; every column scores the same frames "
                "(the first t + max(K) frames of each video are not scored)")


def _adapter(config, frozen, finetune_by_method=None) -> fewshot.Adapter:
  return fewshot.Adapter(models.build(config.model), config.model, frozen, inner_steps=config.meta.inner_steps,
                         finetune_lr=config.fewshot.finetune_lr, finetune_steps=config.fewshot.finetune_steps,
                         finetune_by_method=finetune_by_method)


def _select_finetune(config, heldout, theta, inits, frozen) -> dict:
  """{row: (lr, steps)} for the fine-tuning rows, chosen on held-out source episodes (`finetune_select`)."""
  sel = config.fewshot.select
  rows = {m: (theta if fewshot.INIT[m] == "meta" else inits[fewshot.INIT[m]][0])
          for m in config.fewshot.methods if fewshot.ADAPTATION.get(m) == "finetune"}
  if not rows:
    return {}
  mdef = models.build(config.model)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  sampler = finetune_select.validation_sampler(heldout, t=config.data.t, k_support=config.meta.k_support,
                                               n_query=config.meta.n_query, seed=config.seed)
  return finetune_select.select(task_loss, rows, frozen, sampler, lrs=tuple(sel.lrs), steps=tuple(sel.steps),
                                num_episodes=int(sel.episodes))


def _init_table_inputs(config, workdir, source, params, *, progress):
  """The initialisations of the rows asked for in ``fewshot.methods``: {"pretrained": ..., "meta_fo": ...}."""
  methods = tuple(config.fewshot.methods)
  inits = {}
  if "pretrained" in methods:  # The model trained on the sources, no meta-training (DPU and head as pre-trained).
    inits["pretrained"] = (meta_train_lib.split_by_config(config, params)[0], None)
  if "meta_fo" in methods:  # A first-order meta-training of the same pre-trained model, in its own folder.
    fo = copy.deepcopy(config)
    fo.meta.first_order = True
    theta, alpha, _ = meta_train_lib.meta_train(fo, pathlib.Path(workdir) / "first_order", source, params,
                                                progress=progress)
    inits["meta_fo"] = (theta, alpha)
  return inits


def in_domain_reference(config, workdir, target: Split, target_train: Split, *, progress: bool = True) -> dict:
  """The in-domain reference line: the same model trained on the target's own training split (unsupervised).

  Trained (or resumed) in ``workdir/reference`` with the full MPN loss and ``train.num_steps`` steps, then scored
  without adaptation on the frames every few-shot column scores (the first t + max(K) of each video dropped).

  Returns:
    {"auc", "per_video_auc", "num_frames_scored", "train_steps"}.
  """
  ref = copy.deepcopy(config)
  ref.data = config.target.copy_and_resolve_references()
  state = loop.train(ref, pathlib.Path(workdir) / "reference", target_train, progress=progress)
  params = jax.device_get(state.params)
  theta, frozen = meta_train_lib.split_by_config(config, params)
  adapter = _adapter(config, frozen)
  first_window = max(int(k) for k in config.fewshot.shots)
  parts = [fewshot.score_video_adapted(adapter, "meta", theta, None, target, i, t=config.data.t, k=0,
                                       first_window=first_window, batch_size=config.fewshot.batch_size)
           for i in range(len(target.videos))]
  res = scoring.evaluate_scores(scoring.merge_video_scores(parts), score_weights=dict(config.eval.score_weights))
  return {"auc": res["auc"], "per_video_auc": res["per_video_auc"], "num_frames_scored": res["num_frames_scored"],
          "train_steps": int(state.step)}


def run(config, workdir, *, progress: bool = True) -> dict:
  """Checks -> pre-train -> meta-train -> few-shot tables on the target; every stage resumes from ``workdir``.

  The checks of `checks.check_all` (episodes vs devices, source scenes, target video lengths) run before any
  training step. One table per support protocol of ``fewshot.support`` (default: the paper's "test_first").
  In a multi-process job pre- and meta-training run on the mesh over all processes' devices; the few-shot
  table (per-video adaptation, small) is then computed by every process on its own devices. Writes
  ``workdir/fewshot/{fewshot.json, table.md}`` and per-(method, K) result summaries.
  """
  workdir = pathlib.Path(workdir)
  run_record.check(workdir, config)
  supports = tuple(config.fewshot.get("support", ("test_first",)))
  source = multisource.load(config.data, "training", progress=progress)
  target = sources.load(config.target, "testing", progress=progress)  # Checked before any training.
  preflight.check_video_lengths(target, t=config.data.t, k=max(config.fewshot.shots), what="the few-shot table")
  reference = bool(config.fewshot.get("reference", False))
  target_train = (sources.load(config.target, "training", progress=progress)
                  if "train_random" in supports or reference else None)
  select = config.fewshot.get("select", None)
  heldout = None
  if select:  # Hold out the tail of every source video for choosing the fine-tuning step size and count.
    source, heldout = finetune_select.holdout_tail(source, float(select.val_fraction))
  checks.check_all(config, source, target, target_train)
  if jax.process_index() == 0:
    run_record.write_if_absent(workdir, config)  # A fresh run; an existing record is replaced only at the end.
  params = meta_train_lib.pretrain(config, workdir, source, progress=progress)
  theta, alpha, frozen = meta_train_lib.meta_train(config, workdir, source, params, progress=progress)
  inits = _init_table_inputs(config, workdir, source, params, progress=progress)
  chosen = _select_finetune(config, heldout, theta, inits, frozen) if select else {}
  adapter = _adapter(config, frozen, {m: (c["lr"], c["steps"]) for m, c in chosen.items()})
  ref = in_domain_reference(config, workdir, target, target_train, progress=progress) if reference else None
  tables, unadapted = {}, {}  # unadapted: K = 0 per initialisation, scored once for every protocol.
  for support in supports:
    tables[support] = fewshot.fewshot_table(
        adapter, theta, alpha, target, t=config.data.t, shots=config.fewshot.shots, methods=config.fewshot.methods,
        batch_size=config.fewshot.batch_size, score_weights=dict(config.eval.score_weights), progress=progress,
        support=support, train_split=target_train, seed=config.seed, inits=inits, unadapted=unadapted)
  table = tables[supports[0]]
  if jax.process_index() != 0:  # Multi-process job: every process computed the table; process 0 writes it.
    return table
  name = f"{source.dataset} -> {target.dataset}" + (
      f" (scenes {','.join(config.target.scenes)})" if config.target.get("scenes", ()) else "")
  rows = [r for support in supports for r in fewshot.table_rows(tables[support], name)]
  if ref is not None:  # A line: the same value in every column.
    rows.append({"target": name, "support": "-", "method": "In-domain reference",
                 **{f"K={k}": ref["auc"] for k in table["shots"]}})
  text = report.format_table(rows, ["target", "support", "method"] + [f"K={k}" for k in table["shots"]])
  out = workdir / "fewshot"
  for support, tab in tables.items():
    prefix = "" if support == "test_first" else f"{support}_"
    for method, per_k in tab.pop("results").items():
      for k, res in per_k.items():
        summary = {kk: v for kk, v in res.items() if kk != "frame_scores"}
        atomic_write_json(out / f"results_{prefix}{method}_K{k}.json", summary)
  table["alpha_mean"] = float(np.mean([np.mean(np.abs(a)) for a in jax.tree.leaves(alpha)]))
  table["source"], table["target"] = source.dataset, target.dataset
  table["finetune"] = {m: dict(zip(("lr", "steps"), adapter.finetune_settings(m))) for m in table["methods"]
                       if fewshot.ADAPTATION.get(m) == "finetune"}
  table["finetune_selection"] = chosen or None
  table["reference"] = ref
  table["by_support"] = {s: tab for s, tab in tables.items() if s != supports[0]}
  atomic_write_json(out / "fewshot.json", table, indent=2)
  run_record.write(workdir, config)
  note = f"{COLUMNS_NOTE}; {table['dropped_note']}."
  if table.get("abnormal_support"):
    kmax = max(table["shots"])
    bad = {v: n[kmax] for v, n in table["abnormal_support"].items() if n[kmax]}
    note += (f"\n\nSupport 'test_first': {len(bad)} of {len(table['abnormal_support'])} test videos have labelled "
             f"anomalies in their first K = {kmax} support windows ({', '.join(f'{v}: {n}' for v, n in bad.items())}).")
  atomic_write_text(out / "table.md", f"{text}\n\n{note}\n")
  print(f"\nFew-shot scene adaptation ({COLUMNS_NOTE}):\n{text}")
  return table


def load_video(path, size) -> VideoData:
  """A folder of frames (numeric order) decoded and resized, as one unlabeled test video."""
  path = pathlib.Path(path)
  entry = VideoEntry(name=path.name, scene=path.name, source=path, kind="frames", frames=tuple(list_frames(path)))
  return VideoData(name=path.name, scene=path.name, frames=read_frames(entry, tuple(size)))


def adapt_and_score(config, workdir, video_dir, *, shots: int, method: str = "meta", out=None) -> dict:
  """Adapts the meta-trained model of ``workdir`` to a new camera and scores one video.

  The first ``shots`` windows of the video (assumed normal) are the support set; the
  remaining frames are scored. Writes ``scores.npz``, ``frames.csv``, ``results.json`` (frame-level AUC only
  when labels are known, which they are not here) and the score curve ``scores_p1.png`` to ``out``.
  """
  video = load_video(video_dir, config.data.size)
  preflight.check_video_lengths(Split("video", "testing", [video]), t=config.data.t, k=shots, what="adaptation")
  theta, alpha, frozen = meta_train_lib.load_meta(config, workdir)
  split = Split("video", "testing", [video])
  vs = fewshot.score_video_adapted(_adapter(config, frozen), method, theta, alpha, split, 0, t=config.data.t,
                                   k=shots, first_window=shots, batch_size=config.fewshot.batch_size)
  results = scoring.evaluate_scores(vs, score_weights=dict(config.eval.score_weights))
  results.update(shots=shots, method=method, video=str(video_dir))
  out = pathlib.Path(out or pathlib.Path(workdir) / "adapted" / video.name)
  report.save_scores(out, vs, results)
  from jaxvad.evaluate import plots  # pylint: disable=g-import-not-at-top  # matplotlib: only when plotting.
  plot = plots.plot_score_curves(vs, results, out)[0]  # scores_p1.png: the adapted video's score curve.
  anomaly = results["frame_scores"]["anomaly"][0]
  log.info("scored %d frames of %s after %d-shot %s adaptation -> %s (score curve %s)", anomaly.size, video_dir,
           shots, method, out, plot.name)
  return {"out": str(out), "frame_index": vs.frame_index[0].tolist(), "anomaly": anomaly.tolist(),
          "note": vs.dropped_note, "plot": str(plot)}

