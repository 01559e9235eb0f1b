"""Reads a built jaxvad TFDS data set (``tfds_builders``) into a `Split`, without TensorFlow.

The frames come out exactly as from the frame cache of ``jaxvad prepare``: stored frames are jaxvad-decoded
RGB (PNG, lossless), and frames stored at another size are resized here with the same PIL bilinear resize,
masks with nearest neighbour. So ``WindowSource`` over either path yields identical windows.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from jaxvad.data import decode
from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData

TFDS_SPLITS = {"training": "train", "testing": "test"}


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("reading TFDS data sets needs tensorflow-datasets: pip install 'jaxvad[tfds]'") from None
  return tfds


def dataset_dir(name: str, data_dir: str | pathlib.Path) -> pathlib.Path:
  """The folder of a built data set: ``data_dir/<name>/<config>/<version>`` (latest version if not given).

  Args:
    name: ``builder/config`` or ``builder/config/version``, e.g. ``ucsd_ped2/256x256``.
    data_dir: the TFDS data directory the builder wrote to.

  Returns:
    The folder holding ``dataset_info.json``.
  """
  path = pathlib.Path(data_dir).expanduser() / name
  if (path / "dataset_info.json").is_file():
    return path
  versions = sorted((d for d in path.glob("*") if (d / "dataset_info.json").is_file()),
                    key=lambda d: tuple(int(x) for x in d.name.split(".") if x.isdigit()))
  if not versions:
    raise DataError(f"no built TFDS data set at {path}: build it first (see docs/datasets.md), e.g. "
                    f"`tfds build jaxvad/data/tfds_builders --manual_dir ...` or VadBuilder.download_and_prepare()")
  return versions[-1]


def _resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  if img.shape[:2] == tuple(size):
    return img
  return decode._resize_rgb(Image.fromarray(img), size)  # pylint: disable=protected-access


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  mask = mask[..., 0] if mask.ndim == 3 else mask
  if mask.shape == tuple(size):
    return mask
  return np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST), np.uint8)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def load_split(name: str, data_dir: str | pathlib.Path, split: str, *, size: tuple[int, int],
               dataset: str | None = None) -> Split:
  """Reads one split of a built data set, grouped by video in stored (temporal) order.

  Args:
    name: ``builder/config[/version]``, e.g. ``ucsd_ped2/256x256``.
    data_dir: TFDS data directory.
    split: "training" or "testing" (or the TFDS names "train"/"test").
    size: (H, W) of the returned frames.
    dataset: name to give the `Split` (default: the builder name).

  Returns:
    The split; test videos carry int8 labels, and masks where the data set stores them.

  Raises:
    DataError: tfds is missing, the data set is not built, or its records are out of order.
  """
  tfds = _import_tfds()
  size = (int(size[0]), int(size[1]))
  tsplit = TFDS_SPLITS.get(split, split)
  source = tfds.builder_from_directory(str(dataset_dir(name, data_dir))).as_data_source(split=tsplit)
  groups: dict[str, dict] = {}
  order: list[str] = []
  for i in range(len(source)):
    ex = source[i]
    video = _text(ex["video"])
    g = groups.get(video)
    if g is None:
      if order and video in groups:
        raise DataError(f"{name}/{tsplit}: video {video} is not contiguous (record {i})")
      g = groups[video] = {"scene": _text(ex["scene"]), "frames": [], "labels": [], "masks": [], "has_mask": False}
      order.append(video)
    elif order[-1] != video:
      raise DataError(f"{name}/{tsplit}: video {video} is not contiguous (record {i})")
    if int(ex["frame"]) != len(g["frames"]):
      raise DataError(f"{name}/{tsplit}: video {video} frame {int(ex['frame'])} at position {len(g['frames'])}")
    g["frames"].append(_resize_rgb(np.asarray(ex["image"]), size))
    g["labels"].append(int(ex["label"]))
    if "mask" in ex and bool(ex["has_mask"]):
      g["has_mask"] = True
      g["masks"].append(_resize_mask(np.asarray(ex["mask"]), size))
  videos = []
  for video in order:
    g = groups[video]
    labels = np.asarray(g["labels"], np.int8)
    videos.append(VideoData(video, g["scene"], np.stack(g["frames"]),
                            None if (labels < 0).all() else labels,
                            np.stack(g["masks"]) if g["has_mask"] else None))
  return Split(dataset or name.split("/")[0], {"train": "training", "test": "testing"}.get(tsplit, tsplit), videos)
