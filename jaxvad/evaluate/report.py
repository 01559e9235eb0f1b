"""Writes evaluation outputs to disk, atomically, and formats AUC tables (SPEC 5).

Every evaluation leaves per-frame scores and labels on disk so that curves and
AUCs can be recomputed without the model:

* `scores.npz`: per-video arrays (no pickles; reload with `load_scores`);
* `frames.csv`: one row per scored frame (video, frame, label, every score);
* `results.json`: the JSON part of `scoring.evaluate_scores`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib

import numpy as np

from jaxvad.evaluate.scoring import VideoScores
from jaxvad.utils import atomic_open


def _jsonable(x):
  """Converts NumPy scalars/arrays and NaN (-> null) for strict JSON."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def _per_frame_columns(video_scores: VideoScores, results: dict | None) -> dict[str, list[np.ndarray]]:
  """Score name -> per-video arrays: the raw scores, then the evaluated ones."""
  cols = dict(video_scores.scores)
  for name, arrays in ((results or {}).get("frame_scores") or {}).items():
    cols[name] = arrays
  return cols


def save_scores(path: str | os.PathLike, video_scores: VideoScores,
                results: dict | None = None) -> dict[str, pathlib.Path]:
  """Writes scores.npz, frames.csv and results.json into directory `path`, atomically.

  scores.npz keys: "names", "scenes", "t", "num_frames", "score_names", and per video i
  (4-digit index) "frame_index_{i}", "labels_{i}" (if labels), "score_{name}_{i}" for
  every raw score and every `results["frame_scores"]` entry (normality, anomaly, ...).
  Error maps are not saved (size). frames.csv columns: video, frame, label (empty if
  none), then every score. results.json: `results` without "frame_scores".

  Returns:
    {"npz": path, "csv": path, "json": path}.
  """
  out = pathlib.Path(path)
  vs = video_scores
  cols = _per_frame_columns(vs, results)
  arrays = {
      "names": np.asarray(vs.names, dtype=str),
      "scenes": np.asarray(vs.scenes, dtype=str),
      "t": np.asarray(vs.t),
      "num_frames": np.asarray(vs.num_frames, np.int64),
      "score_names": np.asarray(list(cols), dtype=str),
  }
  for i in range(len(vs.names)):
    arrays[f"frame_index_{i:04d}"] = vs.frame_index[i]
    if vs.labels is not None:
      arrays[f"labels_{i:04d}"] = vs.labels[i]
    for name, per_video in cols.items():
      arrays[f"score_{name}_{i:04d}"] = np.asarray(per_video[i])
  paths = {"npz": out / "scores.npz", "csv": out / "frames.csv", "json": out / "results.json"}
  with atomic_open(paths["npz"], "wb") as f:
    np.savez_compressed(f, **arrays)

  with atomic_open(paths["csv"], "w") as f:
    writer = csv.writer(f)
    writer.writerow(["video", "frame", "label", *cols])
    for i, name in enumerate(vs.names):
      for j, frame in enumerate(vs.frame_index[i]):
        label = "" if vs.labels is None else int(vs.labels[i][j])
        writer.writerow([name, int(frame), label, *(repr(float(cols[c][i][j])) for c in cols)])

  payload = {k: v for k, v in (results or {}).items() if k != "frame_scores"}
  with atomic_open(paths["json"], "w") as f:
    json.dump(_jsonable(payload), f, indent=2, allow_nan=False)
    f.write("\n")
  return paths


def load_scores(path: str | os.PathLike) -> dict:
  """Reads a `save_scores` directory back.

  Returns:
    {"names": [str], "scenes": [str], "t": int, "num_frames": [int],
     "frame_index": [array], "labels": [array] | None, "scores": {name: [array]},
     "results": dict (results.json, {} if absent)}.
  """
  root = pathlib.Path(path)
  with np.load(root / "scores.npz", allow_pickle=False) as z:
    names = [str(n) for n in z["names"]]
    n = len(names)
    score_names = [str(s) for s in z["score_names"]]
    has_labels = n > 0 and "labels_0000" in z.files
    loaded = {
        "names": names,
        "scenes": [str(s) for s in z["scenes"]],
        "t": int(z["t"]),
        "num_frames": [int(x) for x in z["num_frames"]],
        "frame_index": [z[f"frame_index_{i:04d}"] for i in range(n)],
        "labels": [z[f"labels_{i:04d}"] for i in range(n)] if has_labels else None,
        "scores": {s: [z[f"score_{s}_{i:04d}"] for i in range(n)] for s in score_names},
    }
  json_path = root / "results.json"
  loaded["results"] = json.loads(json_path.read_text()) if json_path.exists() else {}
  return loaded


def format_table(rows: list[dict], columns: list[str | tuple[str, str]],
                 float_format: str = "{:.4f}") -> str:
  """A plain-text, markdown-compatible table (e.g. AUC per data set and K).

  Args:
    rows: one dict per row.
    columns: keys, or (key, header) pairs, in display order.
    float_format: format of float cells; None/NaN/missing print as "-".

  Returns:
    The table, columns padded to equal width, lines joined by newlines.
  """
  cols = [c if isinstance(c, tuple) else (c, c) for c in columns]

  def cell(v) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)):
      return "-"
    if isinstance(v, (float, np.floating)):
      return float_format.format(float(v))
    return str(v)

  body = [[cell(r.get(k)) for k, _ in cols] for r in rows]
  header = [h for _, h in cols]
  widths = [max(len(x) for x in [h, *(b[j] for b in body)]) for j, h in enumerate(header)]
  numeric = [bool(body) and all(b[j] == "-" or _is_number(b[j]) for b in body) for j in range(len(cols))]

  def line(cells):
    parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
    return "| " + " | ".join(parts) + " |"

  sep = "|" + "|".join("-" * (w + 1) + ":" if num else "-" * (w + 2)
                       for w, num in zip(widths, numeric)) + "|"
  return "\n".join([line(header), sep, *(line(b) for b in body)])


def _is_number(s: str) -> bool:
  try:
    float(s)
  except ValueError:
    return False
  return True
