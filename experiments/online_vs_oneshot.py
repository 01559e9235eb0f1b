"""Online adaptation vs one-shot K = 10 on the UCSD Ped2 test videos (issue 18 item 3; docs/online.md).

For a finished ``jaxvad meta`` workdir (e.g. configs/meta.py:real_ped2: sources realscenes -> target Ped2), per
Ped2 test video:
  one-shot   the first K = online.support windows adapt theta_0 once (Meta-SGD, learned alpha), the rest is
             scored with theta_K (`fewshot.score_video_adapted`, as the few-shot table's "Meta" K = 10 column);
  online     the same start, then online steps (`online.stream`, the ``online`` defaults of configs/meta.py).
Both score the SAME frames (the first t + K of each video dropped). Frame AUC pooled over videos with the
library's per-video min-max normalisation (`scoring.evaluate_scores`) for both, and with the online
normalisation (the K adaptation windows' statistics, no look-ahead) for both. Settings are the defaults: nothing
is tuned on Ped2 test labels.

  JAXVAD_DATA=/work/shared/data PYTHONPATH=. python experiments/online_vs_oneshot.py \
      --workdir /work/runs/fewshot_seeds/real_ped2/seed_0 --out /tmp/online_seed0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import numpy as np

from jaxvad import run_record
from jaxvad.data import sources
from jaxvad.evaluate import metrics, report, scoring
from jaxvad.meta import fewshot, online, protocol
from jaxvad.meta import train as meta_train_lib
from jaxvad.utils import atomic_write_json, atomic_write_text


def _online_scores(vs: scoring.VideoScores, rows_per_video) -> scoring.VideoScores:
  """The one-shot VideoScores with its raw terms replaced by the online stream's (same frames, checked)."""
  for idx, rows in zip(vs.frame_index, rows_per_video):
    got = np.asarray([r["frame"] for r in rows])
    if not np.array_equal(got, idx):
      raise AssertionError(f"online scored frames {got[:3]}.. differ from the one-shot frames {idx[:3]}..")
  scores = {n: [np.asarray([r["terms"][n] for r in rows], np.float64) for rows in rows_per_video] for n in vs.scores}
  return dataclasses.replace(vs, scores=scores, error_maps=None)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="a finished `jaxvad meta` workdir (config.json, pretrain/, meta/)")
  p.add_argument("--out", required=True, help="JSON result path (a .md table is written beside it)")
  p.add_argument("--cache-dir", default=None, help="target.cache_dir override (the record's may be relative)")
  p.add_argument("--set", action="append", default=[], help="online.* overrides (default: none)")
  args = p.parse_args(argv)
  config = run_record.load(args.workdir)
  if config is None:
    raise SystemExit(f"{args.workdir} has no config.json")
  if args.cache_dir:
    config.target.cache_dir = args.cache_dir
  overrides = {}
  for item in args.set:
    key, _, raw = item.partition("=")
    overrides[key.removeprefix("online.")] = json.loads(raw) if raw[:1] in "0123456789-[{\"" else raw
  settings = online.settings_from_config(config, **overrides)
  k, t = settings.support, int(config.data.t)
  weights = dict(config.eval.score_weights)
  split = sources.load(config.target, "testing", progress=False)
  theta, alpha, frozen = meta_train_lib.load_meta(config, args.workdir)
  adapter = protocol._adapter(config, frozen)  # pylint: disable=protected-access
  model = online.Model(config, theta, alpha, frozen, settings)
  frozen_settings = dataclasses.replace(settings, every=10**9)  # No online step: one-shot with online scores.
  fixed_settings = dataclasses.replace(settings, recalibrate=False)  # Statistics and threshold fixed at theta_K.
  fixed_rows, fixed_updates = [], 0
  oneshot_parts, online_rows, oneshot_rows, per_video, seconds = [], [], [], [], {"oneshot": 0.0, "online": 0.0}
  for i, video in enumerate(split.videos):
    start = time.perf_counter()
    oneshot_parts.append(fewshot.score_video_adapted(adapter, "meta", theta, alpha, split, i, t=t, k=k,
                                                     first_window=k, batch_size=config.fewshot.batch_size))
    seconds["oneshot"] += time.perf_counter() - start
    res = online.run_stream(config, theta, alpha, frozen, video.frames, settings, name=video.name, model=model)
    seconds["online"] += res["seconds"]
    ref = online.run_stream(config, theta, alpha, frozen, video.frames, frozen_settings, name=video.name,
                            model=model)
    fixed = online.run_stream(config, theta, alpha, frozen, video.frames, fixed_settings, name=video.name,
                              model=model)
    fixed_rows.append(fixed["rows"])
    fixed_updates += fixed["num_updates"]
    online_rows.append(res["rows"])
    oneshot_rows.append(ref["rows"])
    # The continual steps' time trend: PSNR gain of online over one-shot on the same frames, early vs late.
    gain = np.asarray([a["terms"]["psnr"] - b["terms"]["psnr"] for a, b in zip(res["rows"], ref["rows"])])
    third = max(len(gain) // 3, 1)
    per_video.append({"video": video.name, "frames": int(video.num_frames), "scored": len(res["rows"]),
                      "updates": res["num_updates"], "resets": res["num_resets"],
                      "abnormal_frames_flagged": res["num_abnormal"], "paused_frames": res["num_paused"],
                      "labelled_abnormal_scored": int(np.sum(np.asarray(video.labels)[t + k:] > 0)),
                      "threshold": res["threshold"], "seconds": round(res["seconds"], 2),
                      "psnr_gain_first_third": float(gain[:third].mean()),
                      "psnr_gain_last_third": float(gain[-third:].mean())})
    print(per_video[-1], flush=True)
  vs_one = scoring.merge_video_scores(oneshot_parts)
  vs_onl = _online_scores(vs_one, online_rows)
  vs_fix = _online_scores(vs_one, fixed_rows)
  ev_fix = scoring.evaluate_scores(vs_fix, score_weights=weights)
  ev_one = scoring.evaluate_scores(vs_one, score_weights=weights)
  ev_onl = scoring.evaluate_scores(vs_onl, score_weights=weights)
  for i, (row, a, b) in enumerate(zip(per_video, ev_one["per_video"], ev_onl["per_video"])):
    row["auc_oneshot"], row["auc_online"] = a["auc"], b["auc"]  # Per-video min-max normalisation (None: 1 class).
    if b["auc"] is not None:  # The online score itself (its own calibration), one video.
      row["auc_online_score"] = metrics.frame_auc([[r["score"] for r in online_rows[i]]], [vs_one.labels[i]])
  score_of = lambda rr: [np.asarray([r["score"] for r in rows]) for rows in rr]
  # The online anomaly score (each frame scored against the calibration in force when it arrived), min-max
  # normalised per video afterwards: the library's normalisation applied to the online score.
  minmax = lambda rr: metrics.minmax_per_video(score_of(rr))
  auc = {"oneshot_per_video_norm": ev_one["auc"], "online_per_video_norm": ev_onl["auc"],
         "oneshot_score_per_video_norm": metrics.frame_auc(minmax(oneshot_rows), vs_one.labels),
         "online_score_per_video_norm": metrics.frame_auc(minmax(online_rows), vs_one.labels),
         "oneshot_online_norm": metrics.frame_auc([np.asarray([r["score"] for r in rows]) for rows in oneshot_rows],
                                                  vs_one.labels),
         "online_online_norm": metrics.frame_auc([np.asarray([r["score"] for r in rows]) for rows in online_rows],
                                                 vs_one.labels),
         "online_fixed_calibration_per_video_norm": ev_fix["auc"],
         "online_fixed_calibration_online_norm": metrics.frame_auc(
             [np.asarray([r["score"] for r in rows]) for rows in fixed_rows], vs_one.labels)}
  # The flag itself (score > threshold) as a detector: true/false positive rates on labelled frames.
  lab = np.concatenate([np.asarray(y) > 0 for y in vs_one.labels])
  flag = {name: np.concatenate([[not r["normal"] for r in rows] for rows in rr])
          for name, rr in (("online", online_rows), ("oneshot", oneshot_rows), ("online_fixed", fixed_rows))}
  rates = {name: {"tpr": float(f[lab].mean()), "fpr": float(f[~lab].mean())} for name, f in flag.items()}
  out = {"workdir": str(args.workdir), "settings": dataclasses.asdict(settings), "score_weights": weights,
         "k": k, "t": t, "num_videos": len(split.videos), "num_frames_scored": int(vs_one.num_scored),
         "dropped_note": vs_one.dropped_note, "auc": auc, "flag_rates": rates,
         "psnr_gain_first_third": float(np.mean([v["psnr_gain_first_third"] for v in per_video])),
         "psnr_gain_last_third": float(np.mean([v["psnr_gain_last_third"] for v in per_video])),
         "updates": int(sum(v["updates"] for v in per_video)), "resets": int(sum(v["resets"] for v in per_video)),
         "seconds": {key: round(v, 2) for key, v in seconds.items()}, "per_video": per_video}
  rows = [{"row": "one-shot K=10 (Meta-SGD)", "AUC, per-video norm": auc["oneshot_per_video_norm"],
           "AUC, online norm": auc["oneshot_online_norm"],
           "AUC, online score per-video norm": auc["oneshot_score_per_video_norm"], "updates": 0, "resets": 0,
           "seconds": out["seconds"]["oneshot"]},
          {"row": "online (K=10 start + online steps)", "AUC, per-video norm": auc["online_per_video_norm"],
           "AUC, online norm": auc["online_online_norm"],
           "AUC, online score per-video norm": auc["online_score_per_video_norm"],
           "updates": out["updates"], "resets": out["resets"],
           "seconds": out["seconds"]["online"]},
          {"row": "online, calibration fixed at theta_K", "AUC, per-video norm": auc[
              "online_fixed_calibration_per_video_norm"], "AUC, online norm": auc["online_fixed_calibration_online_norm"],
           "updates": fixed_updates, "resets": None, "seconds": None}]
  text = report.format_table(rows, ["row", "AUC, per-video norm", "AUC, online norm",
                                    "AUC, online score per-video norm", "updates", "resets", "seconds"])
  out_path = pathlib.Path(args.out)
  atomic_write_json(out_path, out, indent=2)
  atomic_write_text(out_path.with_suffix(".md"), f"{text}\n\n{vs_one.dropped_note}\n")
  print(text)
  return out


if __name__ == "__main__":
  main()
