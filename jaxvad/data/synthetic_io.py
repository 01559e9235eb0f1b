"""Writes a generated benchmark in the on-disk layout of real data sets (SPEC 1.1, 1.2), crash-safely.

    root/training/frames/<video>/000.png ...     root/testing/frames/<video>/000.png ...
    root/testing/gt_masks/<video>/000.png ...    (0/255 pixel masks)
    root/frame_labels.npy                        int8 (1, N) over the sorted test videos, like frame_labels_ped2.npy
    root/scenes.json                             scene specs and the anomaly kind + frame interval of each test video

Each video is written into root/.partial/ and renamed into place when complete, and the .npy/.json files are written to
a temporary file and os.replace()d, so an interrupted run never leaves a half-written video or label file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

import numpy as np
from PIL import Image
from tqdm import tqdm

from jaxvad.data.types import Split
from jaxvad.utils import atomic_save_npy, atomic_write_bytes


def _write_frames(dest: pathlib.Path, images: np.ndarray, partial: pathlib.Path) -> None:
  """Writes images [N, H, W(, 3)] uint8 as dest/<NNN>.png (0-based, >= 3 digits), atomically per video."""
  tmp = partial / f"{dest.parent.parent.name}-{dest.parent.name}-{dest.name}"
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  digits = max(3, len(str(len(images) - 1)))
  for i, image in enumerate(images):
    Image.fromarray(np.ascontiguousarray(image)).save(tmp / f"{i:0{digits}d}.png", compress_level=1)
  dest.parent.mkdir(parents=True, exist_ok=True)
  if dest.exists():
    shutil.rmtree(dest)
  os.replace(tmp, dest)


def _metadata(splits: dict[str, Split]) -> dict:
  scenes, videos = {}, {}
  for key, split in sorted(splits.items()):
    for v in split.videos:
      spec = getattr(v, "spec", None)
      if spec is not None:
        scenes[spec.scene_id] = dataclasses.asdict(spec)
      events = getattr(v, "anomalies", ())
      videos[f"{key}/{v.name}"] = {
          "split": key, "video": v.name, "scene": v.scene, "num_frames": v.num_frames,
          "anomalies": [{"kind": e.kind, "first": e.first, "last": e.last} for e in events]}
  dataset = next(iter(splits.values())).dataset if splits else "synthetic"
  return {"dataset": dataset, "frame_interval": "0-based, inclusive", "scenes": scenes, "videos": videos}


def write_benchmark(splits: dict[str, Split], root: str | os.PathLike, *, progress: bool = True) -> pathlib.Path:
  """Writes `splits` (from make_benchmark) under `root` in the real-data layout; returns `root` as a Path.

  Args:
    splits: {"training": Split, "testing": Split}; test videos carry labels and masks.
    root: output folder (created; existing videos of the same names are replaced).
    progress: show a tqdm progress bar.
  """
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  partial = root / ".partial"
  jobs = [(key, v) for key in ("training", "testing") if key in splits
          for v in sorted(splits[key].videos, key=lambda v: v.name)]
  for key, video in tqdm(jobs, desc=f"writing {root}", unit="video", disable=not progress):
    _write_frames(root / key / "frames" / video.name, video.frames, partial)
    if key == "testing" and video.masks is not None:
      _write_frames(root / key / "gt_masks" / video.name, video.masks, partial)
  if partial.exists():
    shutil.rmtree(partial)
  test = splits.get("testing")
  if test is not None:
    ordered = sorted(test.videos, key=lambda v: v.name)
    if all(v.labels is not None for v in ordered):
      labels = np.concatenate([v.labels for v in ordered]).astype(np.int8)[None, :]  # [1, N]
      atomic_save_npy(root / "frame_labels.npy", labels)
  meta = json.dumps(_metadata(splits), indent=1).encode()
  atomic_write_bytes(root / "scenes.json", meta)
  return root
