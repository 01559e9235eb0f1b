"""Decode once, resize, cache as uint8 arrays; load the cache as memmaps (SPEC 1.1, 1.3).

Cache layout: ``cache_dir/<dataset>/<root name>-<hash10>/<split>/<H>x<W>/`` (the hash is of the resolved data root
and the layout, ``fingerprint.root_key``) holding per video ``<video>.frames.npy`` (uint8 [N, H, W, 3]),
``<video>.labels.npy`` (int8 [N]), ``<video>.masks.npy`` (uint8 [N, H, W]), a ``.json`` sidecar beside each
frames/masks array recording what it was decoded from, and ``index.json``, written last, recording the fingerprint
of the whole split (``fingerprint.py``). Every file is written to a temporary name in the same folder and moved
into place with ``os.replace``, so an interrupted run never leaves a half-written file under a final name and a
re-run resumes. ``prepare_split`` on an existing cache compares fingerprints (one ``stat`` per file) and
re-decodes only the videos, masks and labels whose files changed.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import tqdm

from jaxvad.data import fingerprint
from jaxvad.data.decode import iter_frames, read_frames
from jaxvad.data.errors import DataError
from jaxvad.data import raw_layouts
from jaxvad.data.labels import load_frame_labels
from jaxvad.data.layout import VideoEntry
from jaxvad.data.types import Split, VideoData
from jaxvad.utils import atomic_save_npy, atomic_write_json

__all__ = ["cache_path", "load_dir", "load_split", "prepare_split", "read_frames", "read_split"]

log = logging.getLogger(__name__)

INDEX = "index.json"


def cache_path(cache_dir: str | pathlib.Path, dataset: str, split: str, size: tuple[int, int],
               root: str | pathlib.Path, layout: str = "community") -> pathlib.Path:
  """The cache folder ``cache_dir/<dataset>/<root name>-<hash10>/<split>/<H>x<W>`` of one prepared split."""
  return (pathlib.Path(cache_dir) / dataset / fingerprint.root_key(root, layout) / split /
          f"{int(size[0])}x{int(size[1])}")


def _tmp(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _cached_len(path: pathlib.Path) -> int | None:
  """Leading dimension of a cached array, or None if absent or unreadable."""
  try:
    return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
  except (OSError, ValueError):
    return None


def _write_frames(entry: VideoEntry, path: pathlib.Path, size: tuple[int, int]) -> int:
  """Decodes one video into ``path``; returns its frame count."""
  if entry.kind == "frames":
    # Known length: stream frames into a memmap so memory stays one frame.
    tmp = _tmp(path)
    try:
      out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(entry.frames), *size, 3))
      for i, frame in enumerate(iter_frames(entry, size)):
        out[i] = frame
      out.flush()
      del out
      os.replace(tmp, path)
    finally:
      tmp.unlink(missing_ok=True)
    return len(entry.frames)
  frames = read_frames(entry, size)
  atomic_save_npy(path, frames)
  return int(frames.shape[0])


def _discover(root, split: str, layout: str, scene_rule: str, labels, masks_dir):
  """(entries, label source, mask loaders) of one split; explicit labels/masks override a raw layout's."""
  raw = raw_layouts.discover_split(root, split, layout, scene_rule=scene_rule, masks_dir=masks_dir,
                                   need_labels=labels is None)
  return raw.entries, (labels if labels is not None else raw.labels), raw.masks


def _load_masks(loader: raw_layouts.MaskLoader, entry: VideoEntry, size: tuple[int, int], n: int) -> np.ndarray:
  """Loads one video's masks at ``size`` and checks that there is one per frame."""
  masks = loader(size)
  if masks.shape[0] != n:
    raise DataError(f"mask count mismatch for {entry.source}: {masks.shape[0]} masks but {n} frames")
  return masks


def _select(entries: list[VideoEntry], videos: Sequence[str] | None, root: pathlib.Path) -> list[VideoEntry]:
  if videos is None:
    return entries
  names = {e.name for e in entries}
  unknown = [v for v in videos if v not in names]
  if unknown:
    raise DataError(f"videos not found in {root}: {', '.join(unknown)}")
  return [e for e in entries if e.name in set(videos)]


def _fresh(path: pathlib.Path, expected: dict, n: int | None = None) -> int | None:
  """Length of a cached array whose sidecar matches ``expected`` (and whose length is ``n`` if given), else None."""
  if fingerprint.read_sidecar(path) != expected:
    return None
  got = _cached_len(path)
  return got if n is None or got == n else None


def _mark(path: pathlib.Path, expected: dict) -> None:
  """Records beside a freshly written cached array what it was decoded from."""
  atomic_write_json(path.with_suffix(".json"), expected)


def _read_index(out_dir: pathlib.Path) -> dict | None:
  try:
    return json.loads((out_dir / INDEX).read_text())
  except (OSError, ValueError):
    return None


def _complete(out_dir: pathlib.Path, index: dict) -> bool:
  """Whether every array an index lists is there with its frame count (reads .npy headers only)."""
  for v in index.get("videos", []):
    parts = ["frames"] + ["labels"] * bool(v.get("has_labels")) + ["masks"] * bool(v.get("has_masks"))
    if any(_cached_len(out_dir / f"{v['name']}.{p}.npy") != v.get("num_frames") for p in parts):
      return False
  return True


def prepare_split(root: str | pathlib.Path, split: str, cache_dir: str | pathlib.Path, *, dataset: str,
                  size: tuple[int, int] = (256, 256), scene_rule: str = "dataset",
                  labels: str | pathlib.Path | None = None, masks_dir: str | pathlib.Path | None = None,
                  videos: Sequence[str] | None = None, progress: bool = True,
                  layout: str = "community") -> pathlib.Path:
  """Decodes, resizes and caches one split; resumable; on an existing cache, redoes only what changed.

  Args:
    root: data set root (``root/split/frames/...`` or ``root/split/videos/...``, or the unpacked archive of a
      raw ``layout``).
    split: "training" or "testing".
    cache_dir: cache root.
    dataset: data set name (first level of the cache).
    size: (H, W) frame size.
    scene_rule: see ``layout.scene_of`` (community layout only; raw layouts fix their scenes).
    labels: frame-label file or folder for ``labels.load_frame_labels`` (all videos of the split); for a raw
      layout, None means the archive's own labels.
    masks_dir: folder of per-video pixel-mask folders (``gt_masks``); videos without one get no masks. For a
      raw layout, None means the archive's own masks.
    videos: optional subset of video names to prepare (labels are still checked against the whole split);
      ``index.json`` then lists only these videos.
    progress: show a tqdm bar over videos.
    layout: "community" or an original archive layout (``raw_layouts.LAYOUTS``).

  Returns:
    The cache folder (``cache_path``).

  Raises:
    DataError: the root is missing, malformed data, unreadable frames, or label/mask counts that differ from
      frame counts.
  """
  size = (int(size[0]), int(size[1]))
  if not pathlib.Path(root).expanduser().is_dir():
    raise DataError(f"data root {root} does not exist (set data.root to the data set folder)")
  entries, labels, mask_of = _discover(root, split, layout, scene_rule, labels, masks_dir)
  out_dir = cache_path(cache_dir, dataset, split, size, root, layout)
  todo = _select(entries, videos, pathlib.Path(root) / split)
  fp = fingerprint.split_fingerprint(root=root, layout=layout, scene_rule=scene_rule, size=size, entries=todo,
                                     labels=labels, mask_of=mask_of)
  old = _read_index(out_dir)
  if old is not None:
    if old.get("format") == fingerprint.FORMAT and old.get("fingerprint") == fp and _complete(out_dir, old):
      return out_dir  # Nothing changed since the cache was built.
    changes = fingerprint.differences(old.get("fingerprint"), fp)
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    log.info("cache %s is out of date (%s): re-preparing what changed", out_dir, shown)

  names = [e.name for e in entries]
  all_framed = all(e.kind == "frames" for e in entries)
  per_video = None
  if labels is not None and all_framed:  # Fail before decoding anything.
    per_video = load_frame_labels(labels, names, [len(e.frames) for e in entries])
  out_dir.mkdir(parents=True, exist_ok=True)

  counts: dict[str, int] = {}
  # Raw videos have no known length before decoding: with labels, all of them are needed to check the total.
  need_all_counts = labels is not None and per_video is None
  all_fp = fp["videos"] if not need_all_counts else {e.name: {"frames": fingerprint.video(e)} for e in entries}
  for entry in tqdm.tqdm(entries if need_all_counts else todo, desc=f"prepare {dataset}/{split}", unit="video",
                         disable=not progress):
    path = out_dir / f"{entry.name}.frames.npy"
    made_from = {"frames": all_fp[entry.name]["frames"], "decoder": fp["decoder"], "size": list(size)}
    # Files appear only complete (os.replace), and a sidecar only after its array: a match is finished and current.
    n = _fresh(path, made_from, len(entry.frames) if entry.kind == "frames" else None)
    if n is None:
      n = _write_frames(entry, path, size)
      _mark(path, made_from)
    counts[entry.name] = n
  if per_video is None and labels is not None:
    per_video = load_frame_labels(labels, names, [counts[n] for n in names])
  label_of = dict(zip(names, per_video)) if per_video is not None else {}

  index_videos = []
  for entry in todo:
    n = counts[entry.name]
    has_labels = entry.name in label_of
    if has_labels:
      lpath = out_dir / f"{entry.name}.labels.npy"
      lab = label_of[entry.name]
      if not (lpath.is_file() and np.array_equal(np.load(lpath, allow_pickle=False), lab)):
        atomic_save_npy(lpath, lab)
    has_masks = entry.name in mask_of
    mpath = out_dir / f"{entry.name}.masks.npy"
    if has_masks:
      made_from = {"masks": fp["videos"][entry.name]["masks"], "decoder": fp["decoder"], "size": list(size)}
      if _fresh(mpath, made_from, n) is None:
        atomic_save_npy(mpath, _load_masks(mask_of[entry.name], entry, size, n))
        _mark(mpath, made_from)
    index_videos.append({"name": entry.name, "scene": entry.scene, "num_frames": n,
                         "has_labels": has_labels, "has_masks": has_masks})
  index = {"format": fingerprint.FORMAT, "dataset": dataset, "split": split, "size": list(size),
           "videos": index_videos, "fingerprint": fp}
  atomic_write_json(out_dir / INDEX, index)
  return out_dir


def load_split(cache_dir: str | pathlib.Path, dataset: str, split: str, size: tuple[int, int], *,
               root: str | pathlib.Path | None = None, layout: str = "community") -> Split:
  """Opens a prepared split; frames and masks are read-only memmaps.

  Args:
    cache_dir: cache root given to ``prepare_split``.
    dataset: data set name.
    split: "training" or "testing".
    size: (H, W).
    root: the data root it was prepared from; None: the only root prepared for ``dataset`` in ``cache_dir``.
      This does not check that the cache is current: ``prepare_split`` does (``sources.load`` calls both).
    layout: the layout it was prepared with.

  Returns:
    The split, videos in sorted order.

  Raises:
    DataError: no prepared cache (tells the user to run ``jaxvad prepare``), several roots when ``root`` is
      None, or a cache that disagrees with its index.
  """
  size = (int(size[0]), int(size[1]))
  if root is not None:
    return load_dir(cache_path(cache_dir, dataset, split, size, root, layout))
  found = sorted((pathlib.Path(cache_dir) / dataset).glob(f"*/{split}/{size[0]}x{size[1]}/{INDEX}"))
  if not found:
    raise DataError(f"no prepared cache at {cache_dir}/{dataset}/*/{split}/{size[0]}x{size[1]}: run "
                    f"`jaxvad prepare` for {dataset}/{split} first")
  if len(found) > 1:
    roots = [(_read_index(f.parent) or {}).get("fingerprint", {}).get("root", "?") for f in found]
    raise DataError(f"{cache_dir}/{dataset} holds caches of several data roots ({', '.join(roots)}): pass root=")
  return load_dir(found[0].parent)


def load_dir(out_dir: str | pathlib.Path) -> Split:
  """Opens the prepared split in ``out_dir`` (a ``cache_path``); see ``load_split``."""
  out_dir = pathlib.Path(out_dir)
  index_path = out_dir / INDEX
  if not index_path.is_file():
    raise DataError(f"no prepared cache at {out_dir}: run `jaxvad prepare` first")
  try:
    index = json.loads(index_path.read_text())
    size = tuple(index["size"])
  except (ValueError, KeyError) as e:
    raise DataError(f"corrupt cache index {index_path}: {e}; delete {out_dir} and re-run `jaxvad prepare`") from None
  videos = []
  for v in index["videos"]:
    name, n = v["name"], int(v["num_frames"])
    fpath = out_dir / f"{name}.frames.npy"
    try:
      frames = np.load(fpath, mmap_mode="r", allow_pickle=False)
      lab = np.load(out_dir / f"{name}.labels.npy", allow_pickle=False) if v["has_labels"] else None
      masks = np.load(out_dir / f"{name}.masks.npy", mmap_mode="r", allow_pickle=False) if v["has_masks"] else None
    except (OSError, ValueError) as e:
      raise DataError(f"cannot read cached video {name} in {out_dir}: {e}; delete that folder and re-run "
                      f"`jaxvad prepare`") from None
    if frames.shape != (n, *size, 3):
      raise DataError(f"cache mismatch for {fpath}: shape {frames.shape}, index says {n} frames of "
                      f"{size[0]}x{size[1]}; delete {out_dir} and re-run `jaxvad prepare`")
    videos.append(VideoData(name, v["scene"], frames, lab, masks))
  return Split(index["dataset"], index["split"], videos)


def read_split(root: str | pathlib.Path, split: str, *, dataset: str, size: tuple[int, int] = (256, 256),
               scene_rule: str = "dataset", labels: str | pathlib.Path | None = None,
               masks_dir: str | pathlib.Path | None = None, videos: Sequence[str] | None = None,
               layout: str = "community") -> Split:
  """Like ``prepare_split`` + ``load_split`` but entirely in memory, without a cache (small data, tests).

  Args:
    root: data set root.
    split: "training" or "testing".
    dataset: data set name.
    size: (H, W).
    scene_rule: see ``layout.scene_of``.
    labels: frame-label file or folder (all videos of the split).
    masks_dir: folder of per-video pixel-mask folders.
    videos: optional subset of video names.
    layout: as ``prepare_split``.

  Returns:
    The split, videos in sorted order.

  Raises:
    DataError: as ``prepare_split``.
  """
  size = (int(size[0]), int(size[1]))
  entries, labels, mask_of = _discover(root, split, layout, scene_rule, labels, masks_dir)
  names = [e.name for e in entries]
  todo = _select(entries, videos, pathlib.Path(root) / split)
  all_framed = all(e.kind == "frames" for e in entries)
  label_of = {}
  if labels is not None and all_framed:  # Fail before decoding anything.
    label_of = dict(zip(names, load_frame_labels(labels, names, [len(e.frames) for e in entries])))
  decoded = {e.name: read_frames(e, size) for e in (todo if (labels is None or all_framed) else entries)}
  if labels is not None and not all_framed:
    label_of = dict(zip(names, load_frame_labels(labels, names, [decoded[n].shape[0] for n in names])))
  out = []
  for e in todo:
    frames = decoded[e.name]
    masks = _load_masks(mask_of[e.name], e, size, frames.shape[0]) if e.name in mask_of else None
    out.append(VideoData(e.name, e.scene, frames, label_of.get(e.name), masks))
  return Split(dataset, split, out)
