"""The cross-dataset few-shot protocol (MPN Table 2) and single-video adaptation, end to end."""

from __future__ import annotations

import logging
import pathlib

import jax
import numpy as np

from jaxvad import models
from jaxvad.data import multisource, sources
from jaxvad.data.layout import VideoEntry, list_frames
from jaxvad.data.prepare import read_frames
from jaxvad.data.types import Split, VideoData
from jaxvad.evaluate import report, scoring
from jaxvad.meta import fewshot
from jaxvad.meta import train as meta_train_lib
from jaxvad.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS_NOTE = ("frame-level AUC pooled over the target's test videos; every column scores the same frames "
                "(the first t + max(K) frames of each video are not scored)")


def _adapter(config, frozen) -> fewshot.Adapter:
  return fewshot.Adapter(models.build(config.model), config.model, frozen, inner_steps=config.meta.inner_steps,
                         finetune_lr=config.fewshot.finetune_lr, finetune_steps=config.fewshot.finetune_steps)


def run(config, workdir, *, progress: bool = True) -> dict:
  """Pre-train -> meta-train -> few-shot table on the target; every stage resumes from ``workdir``.

  In a multi-process job pre- and meta-training run on the mesh over all processes' devices; the few-shot
  table (per-video adaptation, small) is then computed by every process on its own devices. Writes ``workdir/fewshot/{fewshot.json, table.md}`` and per-(method, K) per-frame scores.
  """
  workdir = pathlib.Path(workdir)
  source = multisource.load(config.data, "training", progress=progress)
  params = meta_train_lib.pretrain(config, workdir, source, progress=progress)
  theta, alpha, frozen = meta_train_lib.meta_train(config, workdir, source, params, progress=progress)
  target = sources.load(config.target, "testing", progress=progress)
  table = fewshot.fewshot_table(_adapter(config, frozen), theta, alpha, target, t=config.data.t,
                                shots=config.fewshot.shots, methods=config.fewshot.methods,
                                batch_size=config.fewshot.batch_size,
                                score_weights=dict(config.eval.score_weights), progress=progress)
  if jax.process_index() != 0:  # Multi-process job: every process computed the table; process 0 writes it.
    return table
  name = f"{source.dataset} -> {target.dataset}" + (
      f" (scenes {','.join(config.target.scenes)})" if config.target.get("scenes", ()) else "")
  rows = fewshot.table_rows(table, name)
  text = report.format_table(rows, ["target", "method"] + [f"K={k}" for k in table["shots"]])
  out = workdir / "fewshot"
  for method, per_k in table.pop("results").items():
    for k, res in per_k.items():
      summary = {kk: v for kk, v in res.items() if kk != "frame_scores"}
      atomic_write_json(out / f"results_{method}_K{k}.json", summary)
  table["alpha_mean"] = float(np.mean([np.mean(np.abs(a)) for a in jax.tree.leaves(alpha)]))
  table["source"], table["target"] = source.dataset, target.dataset
  atomic_write_json(out / "fewshot.json", table, indent=2)
  atomic_write_text(out / "table.md", f"{text}\n\n{COLUMNS_NOTE}; {table['dropped_note']}.\n")
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
  remaining frames are scored. Writes ``scores.npz``, ``frames.csv`` and ``results.json``
  (frame-level AUC only when labels are known, which they are not here) to ``out``.
  """
  theta, alpha, frozen = meta_train_lib.load_meta(config, workdir)
  video = load_video(video_dir, config.data.size)
  split = Split("video", "testing", [video])
  vs = fewshot.score_video_adapted(_adapter(config, frozen), method, theta, alpha, split, 0, t=config.data.t,
                                   k=shots, first_window=shots, batch_size=config.fewshot.batch_size)
  results = scoring.evaluate_scores(vs, score_weights=dict(config.eval.score_weights))
  results.update(shots=shots, method=method, video=str(video_dir))
  out = pathlib.Path(out or pathlib.Path(workdir) / "adapted" / video.name)
  report.save_scores(out, vs, results)
  anomaly = results["frame_scores"]["anomaly"][0]
  log.info("scored %d frames of %s after %d-shot %s adaptation -> %s", anomaly.size, video_dir, shots, method, out)
  return {"out": str(out), "frame_index": vs.frame_index[0].tolist(), "anomaly": anomaly.tolist(),
          "note": vs.dropped_note}

