"""The benchmarks' original archive layouts, mapped to jaxvad discovery entries (SPEC 1.1-1.3).

One place that knows where each archive, as it unpacks, keeps its videos, frame labels and pixel masks; both
``jaxvad prepare`` (``prepare.prepare_split(layout=...)``) and the TFDS builders read archives through it.

  community     ``ROOT/{training,testing}/{frames/<video>/,videos/<video>.avi}`` (``layout.discover``); labels
                and masks only as given (a label file, a ``gt_masks``-style folder of per-video folders).
  ucsd          ``UCSDpedN/Train/Train001/001.tif``, ``Test/Test001/``, pixel masks ``Test/Test001_gt/*.bmp``,
                labels ``Test/UCSDpedN.m``. One scene.
  avenue        ``Avenue Dataset/{training,testing}_videos/01.avi``; labels and masks from
                ``testing_label_mask/<i>_label.mat`` (``volLabel``), looked for in the root, in
                ``ground_truth_demo/`` and beside the root. One scene.
  shanghaitech  ``training/videos/01_001.avi``, ``testing/frames/01_0014/000.jpg``, labels
                ``testing/test_frame_mask/<video>.npy``, masks ``testing/test_pixel_mask/<video>.npy``.
                Scene = video-name prefix.
  ucf_crime     every ``Normal_Videos*.mp4`` below the root: training outside folders named ``Testing*``,
                testing inside them. One scene per video; no labels or masks.

Raw layouts fix their scene rule (SPEC 1.3); ``scene_rule`` applies to the community layout only.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from jaxvad.data.errors import DataError
from jaxvad.data.labels import load_pixel_masks
from jaxvad.data.layout import VIDEO_EXTS, VideoEntry, discover, list_frames, natural_key
from jaxvad.errors import ConfigError

LAYOUTS = ("community", "ucsd", "avenue", "shanghaitech", "ucf_crime")
SPLITS = ("training", "testing")

# (H, W) or None (native size) -> uint8 [N, H, W] masks, nonzero = abnormal.
MaskLoader = Callable[[tuple[int, int] | None], np.ndarray]


@dataclasses.dataclass(frozen=True)
class RawSplit:
  """The videos of one split and where their ground truth is.

  Attributes:
    entries: videos in sorted order (``layout.VideoEntry``: name, scene, source, kind, frame paths).
    labels: frame-label file or folder for ``labels.load_frame_labels`` (all videos of the split), or None.
    masks: per video name, a loader of its pixel masks; videos without masks are absent.
  """

  entries: list[VideoEntry]
  labels: pathlib.Path | None = None
  masks: dict[str, MaskLoader] = dataclasses.field(default_factory=dict)


def resize_masks(masks: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
  """Nearest-neighbour resize of uint8 [N, h, w] masks to (H, W), as ``labels.load_pixel_masks`` does."""
  masks = np.asarray(masks)
  if size is None or masks.shape[1:] == tuple(size):
    return masks.astype(np.uint8)
  return np.stack([np.asarray(Image.fromarray(m.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST))
                   for m in masks])


def _need_dir(path: pathlib.Path, layout: str, what: str) -> pathlib.Path:
  if not path.is_dir():
    raise DataError(f"{layout} layout: folder {path} not found (expected {what})")
  return path


def frame_folders(parent: pathlib.Path, scene: str = "0", skip_suffix: str = "_gt") -> list[VideoEntry]:
  """Frame-folder videos directly under ``parent`` (UCSD ``Train/Train001``), sorted, ``*_gt`` skipped."""
  dirs = sorted((d for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")
                 and not d.name.endswith(skip_suffix)), key=lambda d: natural_key(d.name))
  if not dirs:
    raise DataError(f"no video folders in {parent}")
  return [VideoEntry(d.name, scene, d, "frames", tuple(list_frames(d))) for d in dirs]


def video_files(folder: pathlib.Path, scene: str | None = "0") -> list[VideoEntry]:
  """Video-file entries in ``folder``, sorted; scene None gives each video its own scene."""
  files = sorted((f for f in folder.iterdir() if f.suffix.lower() in VIDEO_EXTS and not f.name.startswith(".")),
                 key=lambda f: natural_key(f.name))
  if not files:
    raise DataError(f"no video files ({'/'.join(sorted(e[1:] for e in VIDEO_EXTS))}) in {folder}")
  return [VideoEntry(f.stem, f.stem if scene is None else scene, f, "video") for f in files]


def mask_folder_loaders(masks_dir: pathlib.Path, names, suffix: str = "") -> dict[str, MaskLoader]:
  """Loaders for per-video mask-image folders ``masks_dir/<video><suffix>/`` that exist."""
  return {n: (lambda size, d=masks_dir / f"{n}{suffix}": load_pixel_masks(d, size))
          for n in names if (masks_dir / f"{n}{suffix}").is_dir()}


def _npy_mask_loader(path: pathlib.Path) -> MaskLoader:
  return lambda size: resize_masks((np.load(path, allow_pickle=False) != 0).astype(np.uint8) * 255, size)


def _avenue_mask_loader(path: pathlib.Path) -> MaskLoader:
  def load(size):
    import scipy.io  # pylint: disable=g-import-not-at-top
    vol = scipy.io.loadmat(str(path))["volLabel"].ravel()
    return resize_masks(np.stack([(np.asarray(m) != 0).astype(np.uint8) * 255 for m in vol]), size)
  return load


def _ucsd(root: pathlib.Path, split: str, need_labels: bool) -> RawSplit:
  sub = _need_dir(root / ("Train" if split == "training" else "Test"), "ucsd",
                  "UCSDpedN/Train/Train001/001.tif and UCSDpedN/Test/Test001/001.tif; set data.root to UCSDpedN")
  entries = frame_folders(sub)
  if split == "training":
    return RawSplit(entries)
  found = sorted(sub.glob("*.m")) or sorted(root.glob("*.m"))
  if need_labels and not found:
    raise DataError(f"ucsd layout: no UCSDpedN.m label file in {sub} or {root}")
  return RawSplit(entries, found[0] if found else None, mask_folder_loaders(sub, [e.name for e in entries], "_gt"))


def avenue_mask_dir(root: pathlib.Path) -> pathlib.Path | None:
  """The Avenue ``testing_label_mask`` folder: in the root, its ``ground_truth_demo/``, or beside the root."""
  for base in (root, root.parent):
    for rel in ("testing_label_mask", "ground_truth_demo/testing_label_mask"):
      if (base / rel).is_dir():
        return base / rel
  return None


def _avenue(root: pathlib.Path, split: str, need_labels: bool) -> RawSplit:
  folder = f"{split}_videos"
  entries = video_files(_need_dir(root / folder, "avenue", f"{folder}/01.avi; set data.root to 'Avenue Dataset'"))
  if split == "training":
    return RawSplit(entries)
  mask_dir = avenue_mask_dir(root)
  if mask_dir is None:
    if need_labels:
      raise DataError(f"avenue layout: no testing_label_mask/ folder in {root}, {root / 'ground_truth_demo'} or "
                      f"{root.parent} (unzip ground_truth_demo.zip there)")
    return RawSplit(entries)
  masks = {e.name: _avenue_mask_loader(mask_dir / f"{int(e.name)}_label.mat") for e in entries
           if e.name.isdigit() and (mask_dir / f"{int(e.name)}_label.mat").is_file()}
  return RawSplit(entries, mask_dir, masks)


def _shanghaitech(root: pathlib.Path, split: str, need_labels: bool) -> RawSplit:
  sub = "videos" if split == "training" else "frames"
  _need_dir(root / split / sub, "shanghaitech", f"{split}/{sub}/ of shanghaitech.tar.gz; set data.root to it")
  entries = discover(root, split, "prefix")
  if split == "training":
    return RawSplit(entries)
  labels = root / "testing" / "test_frame_mask"
  if need_labels:
    _need_dir(labels, "shanghaitech", "testing/test_frame_mask/<video>.npy frame labels")
  pix = root / "testing" / "test_pixel_mask"
  masks = {e.name: _npy_mask_loader(pix / f"{e.name}.npy") for e in entries if (pix / f"{e.name}.npy").is_file()}
  return RawSplit(entries, labels if labels.is_dir() else None, masks)


def _ucf_crime(root: pathlib.Path, split: str, need_labels: bool) -> RawSplit:
  del need_labels  # Normal videos only: no labels.
  testing = split == "testing"
  seen: dict[str, pathlib.Path] = {}
  for f in sorted(root.rglob("Normal_Videos*")):
    in_testing = any(p.lower().startswith("testing") for p in f.relative_to(root).parts[:-1])
    if f.suffix.lower() not in VIDEO_EXTS or in_testing != testing:
      continue
    if f.stem in seen:
      raise DataError(f"duplicate UCF-Crime video {f.stem}: {seen[f.stem]} and {f}")
    seen[f.stem] = f
  if not seen:
    where = "inside" if testing else "outside"
    raise DataError(f"ucf_crime layout: no Normal_Videos*.mp4 below {root} {where} folders named Testing*")
  return RawSplit([VideoEntry(n, n, seen[n], "video") for n in sorted(seen, key=natural_key)])


_RAW = {"ucsd": _ucsd, "avenue": _avenue, "shanghaitech": _shanghaitech, "ucf_crime": _ucf_crime}


def discover_split(root: str | pathlib.Path, split: str, layout: str = "community", *, scene_rule: str = "dataset",
                   masks_dir: str | pathlib.Path | None = None, need_labels: bool = True) -> RawSplit:
  """Finds the videos of one split and their ground truth, in any supported layout.

  Args:
    root: data set folder as the layout expects it (e.g. ``.../UCSDped2``, ``.../Avenue Dataset``).
    split: "training" or "testing".
    layout: one of ``LAYOUTS``.
    scene_rule: scene rule of the community layout (raw layouts fix their own, SPEC 1.3).
    masks_dir: a folder of per-video mask-image folders (``gt_masks``); overrides the layout's masks.
    need_labels: raise if a raw layout's test labels are missing (pass False when labels come from elsewhere).

  Returns:
    The split's entries, label source and mask loaders.

  Raises:
    DataError: the root or a folder the layout expects is missing (the message names it), or no videos.
    ValueError: unknown layout or split.
  """
  if layout not in LAYOUTS:
    raise ConfigError(f"unknown data layout {layout!r}; expected one of {LAYOUTS}")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  root = pathlib.Path(root)
  if layout == "community":
    raw = RawSplit(discover(root, split, scene_rule))
  else:
    raw = _RAW[layout](_need_dir(root, layout, "the unpacked archive"), split, need_labels)
  if masks_dir is not None:
    raw = dataclasses.replace(raw, masks=mask_folder_loaders(pathlib.Path(masks_dir), [e.name for e in raw.entries]))
  return raw


def label_dirs(root: str | pathlib.Path, layout: str) -> list[pathlib.Path]:
  """Folders in which a relative ``data.labels`` is looked up, in order: the root, then the layout's test folder."""
  root = pathlib.Path(root)
  extra = {"ucsd": ["Test"], "shanghaitech": ["testing"], "avenue": ["ground_truth_demo"]}.get(layout, [])
  return [root, *(root / e for e in extra)]

