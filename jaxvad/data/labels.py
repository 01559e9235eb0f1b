"""Ground-truth frame labels and pixel masks in the formats the benchmarks ship (SPEC 1.2).

Frame labels are int8, 1 = abnormal, one array per test video in sorted order. Accepted formats:
``.npy`` of shape (N,) or (1, N) (all videos concatenated); UCSD/Liu ``.mat`` with variable ``gt`` (per video a
2 x n array of 1-based inclusive [start; end] intervals); the original UCSD ``.m`` text
(``TestVideoFile{end+1}.gt_frame = [5:90, 140:200];``); a ShanghaiTech ``test_frame_mask/`` folder of
``<video>.npy``; and Avenue's per-pixel ``testing_label_mask/<i>_label.mat`` (variable ``volLabel``).
Nothing is ever loaded with ``allow_pickle=True``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

from jaxvad.data.errors import DataError
from jaxvad.data.layout import list_frames, natural_key

_M_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_M_ITEM = re.compile(r"^(\d+)(?::(\d+))?$")
_AVENUE_FILE = re.compile(r"^(\d+)_label\.mat$")


def intervals_to_labels(intervals: Iterable[tuple[int, int]], length: int, source: str = "labels") -> np.ndarray:
  """Turns 1-based inclusive [start, end] abnormal intervals into frame labels.

  Args:
    intervals: (start, end) pairs, 1-based, inclusive (UCSD convention).
    length: number of frames of the video.
    source: what to name in error messages (file and video).

  Returns:
    int8 [length], 1 inside any interval.

  Raises:
    DataError: an interval lies outside [1, length] or ends before it starts.
  """
  labels = np.zeros(int(length), np.int8)
  for start, end in intervals:
    start, end = int(start), int(end)
    if not 1 <= start <= end <= length:
      raise DataError(f"abnormal interval [{start}:{end}] in {source} lies outside the video's frames 1..{length}")
    labels[start - 1:end] = 1
  return labels


def split_by_lengths(labels: np.ndarray, lengths: Sequence[int], source: str = "labels") -> list[np.ndarray]:
  """Splits concatenated frame labels into one array per video.

  Args:
    labels: [N] labels of all videos concatenated in sorted order.
    lengths: frames per video; must sum to N.
    source: what to name in error messages.

  Returns:
    One int8 array per video.

  Raises:
    DataError: the label count differs from the frame count.
  """
  labels = np.asarray(labels)
  total = int(sum(int(n) for n in lengths))
  if labels.shape[0] != total:
    raise DataError(f"label count mismatch in {source}: {labels.shape[0]} labels but {total} frames "
                    f"in {len(lengths)} videos")
  bounds = np.cumsum([0, *[int(n) for n in lengths]])
  return [labels[a:b].astype(np.int8) for a, b in zip(bounds[:-1], bounds[1:])]


def _as_binary(arr: np.ndarray, source: str) -> np.ndarray:
  """Checks that labels are 0/1 and returns them as int8."""
  if arr.dtype.kind not in "biuf":
    raise DataError(f"labels in {source} have dtype {arr.dtype} (expected 0/1 numbers)")
  bad = ~np.isin(arr, (0, 1))
  if bad.any():
    raise DataError(f"labels in {source} must be 0 or 1, found {arr[bad][0]!r}")
  return arr.astype(np.int8)


def _load_npy(path: pathlib.Path) -> np.ndarray:
  """np.load without pickles, with one-line errors."""
  try:
    return np.load(path, allow_pickle=False)
  except ValueError as e:  # object arrays need pickle: refuse them.
    raise DataError(f"cannot read {path} without pickle (object array?): {e}".splitlines()[0]) from None
  except OSError as e:
    raise DataError(f"cannot read {path}: {e}".splitlines()[0]) from None


def _loadmat(path: pathlib.Path) -> dict:
  import scipy.io  # pylint: disable=g-import-not-at-top

  try:
    return scipy.io.loadmat(str(path))
  except (ValueError, OSError, TypeError, NotImplementedError) as e:
    raise DataError(f"cannot read MATLAB file {path}: {e}".splitlines()[0]) from None


def _check_count(n_file: int, lengths: Sequence[int] | None, source: pathlib.Path) -> None:
  if lengths is not None and n_file != len(lengths):
    raise DataError(f"video count mismatch in {source}: {n_file} videos in the labels but {len(lengths)} test videos")


def _need_lengths(lengths: Sequence[int] | None, source: pathlib.Path) -> Sequence[int]:
  if lengths is None:
    raise DataError(f"interval labels in {source} need the frame count of every video (pass video_lengths)")
  return lengths


def parse_m_intervals(text: str, source: str = "<text>") -> list[list[tuple[int, int]]]:
  """Parses the original UCSD ``.m`` annotation into per-video interval lists.

  Args:
    text: file contents with lines like ``TestVideoFile{end+1}.gt_frame = [61:180];`` (also several intervals
      ``[5:90, 140:200]``, a single frame ``[7]``, or none ``[]``).
    source: file name for error messages.

  Returns:
    One list of 1-based inclusive (start, end) pairs per video, in file order.

  Raises:
    DataError: no ``gt_frame`` line, or an entry that is not ``a`` or ``a:b``.
  """
  videos = []
  for line in text.splitlines():
    line = line.split("%", 1)[0]
    m = _M_LINE.search(line)
    if not m:
      continue
    intervals = []
    for item in re.split(r"[,;\s]+", m.group(1).strip()):
      if not item:
        continue
      im = _M_ITEM.match(item)
      if not im:
        raise DataError(f"cannot parse interval {item!r} in {source}: {line.strip()}")
      start = int(im.group(1))
      intervals.append((start, int(im.group(2)) if im.group(2) else start))
    videos.append(intervals)
  if not videos:
    raise DataError(f"no 'gt_frame = [...]' lines in {source} (expected the UCSD .m annotation)")
  return videos


def _mat_intervals(path: pathlib.Path) -> list[list[tuple[int, int]]]:
  """Reads the per-video 2 x n interval arrays of a UCSD/Liu ``.mat`` file."""
  mat = _loadmat(path)
  if "gt" not in mat:
    keys = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(f"no variable 'gt' in {path} (found {keys})")
  gt = mat["gt"]
  cells = list(gt.ravel()) if gt.dtype == object else [gt]
  videos = []
  for i, cell in enumerate(cells):
    arr = np.asarray(cell)
    if arr.size == 0:
      videos.append([])
      continue
    if arr.ndim != 2 or arr.shape[0] != 2:
      raise DataError(f"gt entry {i + 1} in {path} has shape {arr.shape} (expected 2 x n [start; end] intervals)")
    videos.append([(int(s), int(e)) for s, e in arr.T])
  return videos


def load_avenue_mask_file(path: str | pathlib.Path) -> np.ndarray:
  """Frame labels of one Avenue ``<i>_label.mat`` file: a frame is abnormal where any mask pixel is set.

  Args:
    path: a file holding ``volLabel``, a 1 x n cell of H x W masks.

  Returns:
    int8 [n] labels.
  """
  path = pathlib.Path(path)
  mat = _loadmat(path)
  if "volLabel" not in mat:
    raise DataError(f"no variable 'volLabel' in {path} (expected an Avenue testing_label_mask file)")
  return np.array([np.asarray(m).any() for m in mat["volLabel"].ravel()], np.int8)


def _load_avenue_dir(path: pathlib.Path, files: list[pathlib.Path], lengths: Sequence[int] | None) -> list[np.ndarray]:
  files = sorted(files, key=lambda f: int(_AVENUE_FILE.match(f.name).group(1)))
  _check_count(len(files), lengths, path)
  out = [load_avenue_mask_file(f) for f in files]
  for i, (f, lab) in enumerate(zip(files, out)):
    if lengths is not None and lab.shape[0] != lengths[i]:
      raise DataError(f"label count mismatch in {f}: {lab.shape[0]} labels but test video {i + 1} has "
                      f"{lengths[i]} frames")
  return out


def _load_per_video_dir(path: pathlib.Path, names: Sequence[str] | None,
                        lengths: Sequence[int] | None) -> list[np.ndarray]:
  """ShanghaiTech ``test_frame_mask/<video>.npy``."""
  if names is None:
    files = sorted(path.glob("*.npy"), key=lambda f: natural_key(f.stem))
  else:
    files = [path / f"{n}.npy" for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
      raise DataError(f"missing per-video labels in {path}: {', '.join(missing[:5])}"
                      + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
  _check_count(len(files), lengths, path)
  out = []
  for i, f in enumerate(files):
    lab = _as_binary(_load_npy(f).reshape(-1), str(f))
    if lengths is not None and lab.shape[0] != lengths[i]:
      raise DataError(f"label count mismatch in {f}: {lab.shape[0]} labels but the video has {lengths[i]} frames")
    out.append(lab)
  return out


def load_frame_labels(path: str | pathlib.Path, video_names: Sequence[str] | None = None,
                      video_lengths: Sequence[int] | None = None) -> list[np.ndarray]:
  """Loads frame labels (1 = abnormal) in any supported format, one int8 array per video.

  Args:
    path: a ``.npy``, ``.mat`` or ``.m`` file, or a folder of per-video ``<video>.npy`` (ShanghaiTech
      ``test_frame_mask``) or of Avenue ``<i>_label.mat`` files.
    video_names: test video names in sorted order (used to pick per-video files).
    video_lengths: frames per test video in sorted order. Needed by interval formats and to split a
      concatenated ``.npy``; without it a ``.npy`` is returned as a single array.

  Returns:
    One int8 [N_v] array per video, in sorted video order.

  Raises:
    DataError: unreadable or unknown format; label total differs from the frame total (the message names the
      file and both numbers); the number of videos differs; an interval lies outside its video.
  """
  path = pathlib.Path(path)
  if video_names is not None and video_lengths is not None and len(video_names) != len(video_lengths):
    raise ValueError("video_names and video_lengths differ in length")
  if path.is_dir():
    avenue = [f for f in path.iterdir() if _AVENUE_FILE.match(f.name)]
    if avenue:
      return _load_avenue_dir(path, avenue, video_lengths)
    if any(path.glob("*.npy")):
      return _load_per_video_dir(path, video_names, video_lengths)
    raise DataError(f"no label files in {path} (expected <video>.npy or <i>_label.mat files)")
  if not path.is_file():
    raise DataError(f"label file not found: {path}")
  suffix = path.suffix.lower()
  if suffix == ".npy":
    arr = _load_npy(path)
    if arr.ndim == 2 and arr.shape[0] == 1:
      arr = arr[0]
    if arr.ndim != 1:
      raise DataError(f"labels in {path} have shape {arr.shape} (expected (N,) or (1, N))")
    arr = _as_binary(arr, str(path))
    if video_lengths is None:
      return [arr]
    return split_by_lengths(arr, video_lengths, str(path))
  if suffix == ".mat":
    videos = _mat_intervals(path)
  elif suffix == ".m":
    videos = parse_m_intervals(path.read_text(errors="replace"), str(path))
  else:
    raise DataError(f"unknown label format {path} (expected .npy, .mat, .m or a folder)")
  lengths = _need_lengths(video_lengths, path)
  _check_count(len(videos), lengths, path)
  return [intervals_to_labels(iv, n, f"{path} (video {i + 1})") for i, (iv, n) in enumerate(zip(videos, lengths))]


def load_pixel_masks(mask_dir: str | pathlib.Path, size: tuple[int, int] | None = None) -> np.ndarray:
  """Loads the pixel-level masks of one video (``gt_masks/<video>/NNN.png``), in numeric frame order.

  Args:
    mask_dir: folder of per-frame mask images.
    size: optional (H, W) to resize to, with nearest-neighbour so masks stay binary-valued.

  Returns:
    uint8 [N, H, W], nonzero = abnormal.

  Raises:
    DataError: malformed folder (see ``list_frames``) or an unreadable image.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  out = []
  for f in list_frames(mask_dir):
    try:
      with Image.open(f) as img:
        img = img.convert("L")
        if size is not None and img.size != (size[1], size[0]):
          img = img.resize((size[1], size[0]), Image.NEAREST)
        out.append(np.asarray(img, np.uint8))
    except (OSError, SyntaxError, ValueError) as e:
      raise DataError(f"cannot read mask image {f}: {e}".splitlines()[0]) from None
  shapes = {a.shape for a in out}
  if len(shapes) > 1:
    raise DataError(f"mask images in {mask_dir} differ in size: {sorted(shapes)}")
  return np.stack(out)
