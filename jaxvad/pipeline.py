"""End-to-end jobs behind the CLI: train, evaluate, demo."""

from __future__ import annotations

import json
import logging
import pathlib

import jax

from jaxvad import config_lib, preflight, run_record
from jaxvad.data import multisource, sources
from jaxvad.data.errors import DataError
from jaxvad.evaluate import report, scoring
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import loop
from jaxvad.train import mesh as mesh_lib
from jaxvad.utils import atomic_write_text

log = logging.getLogger(__name__)


def train(config, workdir, *, progress: bool = True, stop_after: int | None = None):
  """Loads the training split of ``config.data`` (the union of ``data.sources`` when set) and runs `loop.train`."""
  split = multisource.load(config.data, "training", progress=progress)
  return loop.train(config, workdir, split, progress=progress, stop_after=stop_after)


def make_predict_fn(mdef, variables, model_config, mesh):
  """A jitted ``windows [B, T+1, H, W, 3] -> {"pred", extra scores}`` for `scoring.score_split`."""

  @jax.jit
  def predict(variables, window):
    pred, aux = mdef.module.apply(variables, window[:, :-1], train=False)  # The target is never read.
    return {"pred": pred, **mdef.score_fn(pred, aux, window, model_config)}

  if jax.process_count() == 1:
    sharding = mesh_lib.batch_sharding(mesh)
    return lambda windows: predict(variables, jax.device_put(windows, sharding))

  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  def predict_all_processes(windows):
    # Every process passes the same host batch; each device computes its rows, and every process gets
    # all outputs back (process_allgather blocks: no overlap with the next batch's window building).
    out = predict(variables, mesh_lib.shard_batch({"w": windows}, mesh)["w"])
    return multihost_utils.process_allgather(out, tiled=True)

  return predict_all_processes


def eval_batch_size(batch_size: int, mesh) -> int:
  """``batch_size`` rounded up to a multiple of the mesh's device count (the batch is split over it)."""
  n = mesh.devices.size
  return -(-batch_size // n) * n


def restore_variables(config, workdir, mesh, image_size):
  """The trained model's variables from the latest checkpoint of ``workdir``."""
  mdef, _, state = loop.create_train_state(config, mesh, image_size)
  ckpt = ckpt_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints")
  restored = ckpt.restore(state)
  ckpt.close()
  if restored is None:
    raise DataError(f"no checkpoint in {workdir}/checkpoints: run `jaxvad train` with this workdir first")
  return mdef, {"params": restored.params, **restored.model_state}, int(restored.step)


def evaluate(config, workdir, *, progress: bool = True) -> dict:
  """Scores the test split, computes the AUCs of SPEC 5, writes scores, results and plots.

  Outputs under ``workdir/<eval.out>/`` (default ``eval/``): results.json, scores.npz, frames.csv, roc.png,
  scores_p<k>.png / psnr_p<k>.png (every video), error_maps.png, for models with a DPU normalcy_maps.png
  (MPN Fig. 4) and,
  for PGM with memory, distances.json (PGM Fig. 9).
  """
  workdir = pathlib.Path(workdir)
  preflight.require_trained(workdir, "evaluate")  # Before any work; creates nothing.
  run_record.check(workdir, config)  # Scored as trained: same data size, model...
  split = sources.load(config.data, "testing", progress=progress)
  mesh = mesh_lib.make_mesh(config.get("num_devices", None))
  mdef, variables, step = restore_variables(config, workdir, mesh, split.videos[0].frames.shape[1:3])
  predict_fn = make_predict_fn(mdef, variables, config.model, mesh)
  has_masks = all(v.masks is not None for v in split.videos)
  video_scores = scoring.score_split(split, predict_fn, t=config.data.t,
                                     batch_size=eval_batch_size(config.eval.batch_size, mesh),
                                     keep_error_maps=has_masks, progress=progress)
  results = scoring.evaluate_scores(video_scores, score_weights=dict(config.eval.score_weights),
                                    smooth=config.eval.smooth)
  results.update(model=config.model.name, checkpoint_step=step)
  if jax.process_index() != 0:  # Multi-process job: every process scored every frame; process 0 writes.
    return results
  if jax.process_count() > 1:  # The figures below run on process 0 alone: a local copy of the parameters.
    variables = jax.device_get(variables)
  out = workdir / config.eval.get("out", "eval")
  report.save_scores(out, video_scores, results)
  if config.model.name == "pgm":  # PGM Fig. 9: D_m and D_q over a few test windows.
    from jaxvad.models import pgm
    dist = pgm.distances_report(mdef.module, variables, split, config.data.t, batch_size=config.eval.batch_size)
    if dist is not None:
      atomic_write_text(out / "distances.json", json.dumps(dist, indent=2))
  if config.eval.plots and video_scores.labels is not None and results["auc"] is not None:  # One class: no ROC.
    _plots(out, split, video_scores, results, mdef, variables, config)
  summary = {k: results.get(k) for k in ("auc", "auc_smoothed", "per_video_auc", "pixel_auc")}
  log.info("%s on %s: %s; %s", config.model.name, split.dataset,
           ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if v is not None), results["dropped_note"])
  log.info("evaluation outputs (results.json, scores.npz, frames.csv, plots) in %s", out)
  return results


def _plots(out, split, video_scores, results, mdef, variables, config) -> None:
  """ROC, score and PSNR curves of every video, error maps of a spread of examples, normalcy maps (MPN Fig. 4)."""
  from jaxvad.evaluate import examples  # matplotlib is slow to import: only when plotting.
  examples.write_eval_plots(out, split, video_scores, results, mdef, variables, config)


def demo(workdir="runs/demo", *, models: str = "baseline", overrides=(), progress: bool = True) -> list[dict]:
  """Synthetic benchmark on disk -> prepare -> train each model's ``quick`` config -> evaluate -> table."""
  from jaxvad.data import synthetic
  workdir = pathlib.Path(workdir)
  rows = []
  for name in [m.strip() for m in models.split(",") if m.strip()]:
    config = config_lib.apply_overrides(config_lib.load_config(f"configs/{name}.py:quick"), list(overrides))
    data_root = workdir / "data" / f"synthetic_{config.data.size[0]}"
    if not (data_root / "testing" / "frames").is_dir() or not (data_root / "frame_labels.npy").exists():
      splits = synthetic.make_benchmark(size=config.data.size[0], **config.data.synthetic)
      synthetic.write_benchmark(splits, data_root, progress=progress)
      print(synthetic.describe(splits))
    config.data.root = str(data_root)
    config.data.cache_dir = str(workdir / "cache")
    state = train(config, workdir / name, progress=progress)
    res = evaluate(config, workdir / name, progress=progress)
    rows.append(dict(model=name, params=int(sum(x.size for x in jax.tree.leaves(state.params))),
                     steps=int(state.step), auc=res["auc"], per_video_auc=res["per_video_auc"],
                     pixel_auc=res["pixel_auc"]))
  table = report.format_table(rows, [("model", "model"), ("params", "params"), ("steps", "steps"),
                                     ("auc", "frame AUC"), ("per_video_auc", "per-video AUC"),
                                     ("pixel_auc", "pixel AUC")])
  print("\nSynthetic benchmark, held-out test videos (frame-level AUC, first t frames of each video not scored):")
  print(table)
  atomic_write_text(workdir / "summary.md", table + "\n")
  atomic_write_text(workdir / "summary.json", json.dumps(rows, indent=2))
  print(f"\nplots and per-frame scores: {workdir}/<model>/eval/ (roc.png, scores_p*.png, psnr_p*.png, "
        "error_maps.png)")
  return rows
