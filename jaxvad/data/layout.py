"""Discovery of the community on-disk layout (SPEC 1.1).

``ROOT/{training,testing}/frames/<video>/<frame>.<jpg|jpeg|png|tif|tiff|bmp>``, or, for data sets shipped as raw
videos (ShanghaiTech training, UCF-Crime, Avenue originals), ``ROOT/<split>/videos/<video>.<avi|mp4|mkv|mov>``.
Frames are ordered by the integer in their stem, whatever its zero padding (``0.jpg``, ``000.jpg``, ``0001.tif``):
sorting file names as strings puts ``10.jpg`` before ``2.jpg``, a known crash in other implementations.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Literal

from jaxvad.data.errors import DataError
from jaxvad.errors import ConfigError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
VIDEO_EXTS = frozenset({".avi", ".mp4", ".mkv", ".mov"})
SCENE_RULES = ("dataset", "prefix", "video")

_DIGITS = re.compile(r"(\d+)")


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One video found on disk, not yet decoded.

  Attributes:
    name: video id (frame folder name, or video file stem).
    scene: camera-view id given by the scene rule.
    source: the frame folder (kind "frames") or the video file (kind "video").
    kind: "frames" for a folder of images, "video" for an encoded video file.
    frames: image paths in temporal order (empty for kind "video").
  """

  name: str
  scene: str
  source: pathlib.Path
  kind: Literal["frames", "video"]
  frames: tuple[pathlib.Path, ...] = ()


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
  """Sort key that orders digit runs by value, so that "2" < "10" and "01_002" < "01_010".

  Args:
    name: a file or video name.

  Returns:
    A tuple usable as a ``sorted`` key.
  """
  parts = _DIGITS.split(name)
  return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts if p)


def frame_index(path: pathlib.Path) -> int:
  """The frame number of an image file: the last run of digits in its stem.

  Args:
    path: an image path such as ``.../017.jpg`` or ``.../frame_0017.png``.

  Returns:
    The integer frame index.

  Raises:
    DataError: the stem holds no number.
  """
  digits = _DIGITS.findall(path.stem)
  if not digits:
    raise DataError(f"frame without a number in {path.parent}: {path.name} (expected e.g. 000.jpg or 0001.png)")
  return int(digits[-1])


def list_frames(video_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """Lists the image frames of one video folder in numeric order.

  Accepts any zero padding and a start at 0 or 1; files that are not images are ignored.

  Args:
    video_dir: folder holding the frames of one video.

  Returns:
    The image paths sorted by frame number.

  Raises:
    DataError: the folder is missing or holds no images; a stem has no number; two files share a frame
      number (``1.jpg`` and ``001.jpg``, or ``1.jpg`` and ``1.png``); numbering has a gap; or the first
      frame is neither 0 nor 1.
  """
  video_dir = pathlib.Path(video_dir)
  if not video_dir.is_dir():
    raise DataError(f"frame folder not found: {video_dir}")
  images = [p for p in video_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
  if not images:
    exts = "/".join(sorted(e[1:] for e in IMAGE_EXTS))
    raise DataError(f"no image frames ({exts}) in {video_dir}")
  indexed = sorted(((frame_index(p), p) for p in images), key=lambda t: (t[0], t[1].name))
  first = indexed[0][0]
  if first not in (0, 1):
    raise DataError(f"frame numbering in {video_dir} starts at {indexed[0][1].name} (expected frame 0 or 1)")
  for (i, prev), (j, cur) in zip(indexed, indexed[1:]):
    if j == i:
      raise DataError(f"duplicate frame {i} in {video_dir}: {prev.name} and {cur.name}")
    if j != i + 1:
      width = len(_DIGITS.findall(prev.stem)[-1])
      lo, hi = str(i + 1).zfill(width), str(j - 1).zfill(width)
      missing = lo if j == i + 2 else f"{lo}..{hi}"
      raise DataError(f"frame gap in {video_dir}: {prev.name} is followed by {cur.name} ({missing} missing)")
  return [p for _, p in indexed]


def scene_of(video_name: str, rule: str) -> str:
  """The scene (camera view) of a video under a naming rule (SPEC 1.3).

  Args:
    video_name: the video id.
    rule: "dataset" (one scene for the whole data set: UCSD, Avenue), "prefix" (ShanghaiTech: "01_001" -> "01";
      a name without '_' is its own scene) or "video" (each video its own scene: UCF-Crime).

  Returns:
    The scene id.

  Raises:
    ValueError: unknown rule.
  """
  if rule == "dataset":
    return "0"
  if rule == "prefix":
    return video_name.split("_", 1)[0]
  if rule == "video":
    return video_name
  raise ConfigError(f"unknown scene rule {rule!r}; expected one of {SCENE_RULES}")


def discover(root: str | pathlib.Path, split: str, scene_rule: str = "dataset") -> list[VideoEntry]:
  """Finds the videos of one split of a data set.

  Looks in ``root/split/frames/<video>/``; if that folder is missing but ``root/split/videos/`` exists, lists
  its video files (kind "video", decoded later by ``prepare``).

  Args:
    root: data set root, e.g. ``.../ped2``.
    split: "training" or "testing".
    scene_rule: see ``scene_of``.

  Returns:
    The videos sorted by name (numeric-aware).

  Raises:
    DataError: the split folder is missing, holds neither ``frames/`` nor ``videos/``, or holds no videos;
      or a frame folder is malformed (see ``list_frames``).
  """
  if scene_rule not in SCENE_RULES:
    raise ConfigError(f"unknown scene rule {scene_rule!r}; expected one of {SCENE_RULES}")
  split_dir = pathlib.Path(root) / split
  frames_dir, videos_dir = split_dir / "frames", split_dir / "videos"
  expected = f"expected {frames_dir}/<video>/<frame>.jpg or {videos_dir}/<video>.avi"
  if not split_dir.is_dir():
    raise DataError(f"split folder not found: {split_dir} ({expected})")
  entries: list[VideoEntry] = []
  if frames_dir.is_dir():
    dirs = sorted((d for d in frames_dir.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: natural_key(d.name))
    if not dirs:
      raise DataError(f"no video folders in {frames_dir} ({expected})")
    for d in dirs:
      entries.append(VideoEntry(d.name, scene_of(d.name, scene_rule), d, "frames", tuple(list_frames(d))))
  elif videos_dir.is_dir():
    files = sorted((f for f in videos_dir.iterdir() if f.suffix.lower() in VIDEO_EXTS and not f.name.startswith(".")),
                   key=lambda f: natural_key(f.name))
    if not files:
      exts = "/".join(sorted(e[1:] for e in VIDEO_EXTS))
      raise DataError(f"no video files ({exts}) in {videos_dir}")
    seen: dict[str, pathlib.Path] = {}
    for f in files:
      if f.stem in seen:
        raise DataError(f"duplicate video {f.stem} in {videos_dir}: {seen[f.stem].name} and {f.name}")
      seen[f.stem] = f
      entries.append(VideoEntry(f.stem, scene_of(f.stem, scene_rule), f, "video"))
  else:
    raise DataError(f"no frames/ or videos/ folder in {split_dir} ({expected})")
  return entries
