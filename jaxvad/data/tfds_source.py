"""Reads a built jaxvad TFDS data set (``tfds_builders``) into a `Split`, without TensorFlow.

Stored frames are jaxvad-decoded RGB (PNG, lossless). A build at the read size (config ``<H>x<W>``, resized
once from the originals with the frame cache's PIL bilinear filter) or at the original size (resized here with
that filter) gives windows identical to the frame cache of ``jaxvad prepare``. Reading another build (e.g.
``256x256`` at 64x64) resizes twice and differs by a few grey levels.

Defaults for ``data.format = "tfds"`` (``resolve``): ``data.tfds_dir`` empty -> ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets``; ``data.tfds_name`` empty -> ``<builder>/<H>x<W>`` from ``data.dataset`` and
``data.size`` (``ped2`` at 64x64 -> ``ucsd_ped2/64x64``), else ``<builder>/original`` where only that is built.
A missing build is built from ``data.root`` (the manual directory) when that folder exists.
"""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np
from PIL import Image

from jaxvad.data import decode
from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData

log = logging.getLogger(__name__)

TFDS_SPLITS = {"training": "train", "testing": "test"}

DATASET_BUILDERS = {"ped1": "ucsd_ped1", "ped2": "ucsd_ped2", "avenue": "cuhk_avenue",
                    "shanghaitech": "shanghaitech_campus", "ucf_crime": "ucf_crime_normal"}
DEFAULT_CONFIG = "256x256"


def default_data_dir() -> pathlib.Path:
  """Where TFDS data sets live by default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  return pathlib.Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def builder_name(dataset: str) -> str:
  """The TFDS builder of a jaxvad data set name (``ped2`` -> ``ucsd_ped2``); builder names pass through."""
  if dataset in DATASET_BUILDERS:
    return DATASET_BUILDERS[dataset]
  if dataset in DATASET_BUILDERS.values():
    return dataset
  raise DataError(f"no TFDS builder for data set {dataset!r}; known: {', '.join(DATASET_BUILDERS)}")


def config_name(size) -> str:
  """``(64, 64)`` / ``64`` / ``"64"`` / ``"64x64"`` -> ``"64x64"``; ``None`` / ``"original"`` -> ``"original"``."""
  if size is None or size == "original":
    return "original"
  if isinstance(size, str):
    parts = size.lower().replace(",", "x").split("x")
    try:
      size = tuple(int(p) for p in parts)
    except ValueError:
      raise DataError(f"--size {size!r}: expected N, HxW or 'original', e.g. --size 64 or --size 256x256") from None
  if isinstance(size, int):
    size = (size, size)
  h, w = (int(s) for s in size) if len(size) == 2 else (int(size[0]),) * 2
  if h <= 0 or w <= 0:
    raise DataError(f"size {size}: must be positive")
  return f"{h}x{w}"


def size_of(config: str) -> tuple[int, int] | None:
  if config == "original":
    return None
  h, w = config.split("x")
  return int(h), int(w)


def quiet_tfds_logs() -> None:
  """Drops absl's "OpenCV is not installed" (PIL decodes PNG losslessly) and "Using custom data configuration"."""
  absl = logging.getLogger("absl")
  if not any(isinstance(f, _QuietFilter) for f in absl.filters):
    absl.addFilter(_QuietFilter())


class _QuietFilter(logging.Filter):
  PREFIXES = ("OpenCV is not installed", "Using custom data configuration")

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.PREFIXES)


def import_tfds():
  """``tensorflow_datasets`` (quiet), or a one-line DataError saying how to install it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("TFDS data sets need tensorflow-datasets (no TensorFlow): pip install 'jaxvad[tfds]'") from None
  quiet_tfds_logs()
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
    builder, _, config = name.partition("/")
    raise DataError(f"no built TFDS data set at {path}: build it first with `jaxvad build-tfds --dataset "
                    f"{builder} --manual-dir <unpacked archive> --data-dir {data_dir} --size {config or '256x256'}`")
  return versions[-1]


def is_built(name: str, data_dir) -> bool:
  """Whether ``data_dir/<name>`` holds a finished build (any version)."""
  try:
    dataset_dir(name, data_dir)
  except DataError:
    return False
  return True


def resolve(data_config) -> tuple[str, pathlib.Path]:
  """``(tfds_name, tfds_dir)`` of a data config, empty fields filled with the defaults of the module doc."""
  data_dir = pathlib.Path(data_config.get("tfds_dir", "") or default_data_dir()).expanduser()
  name = data_config.get("tfds_name", "")
  if name:
    return name, data_dir
  builder = builder_name(data_config.dataset)
  exact = f"{builder}/{config_name(tuple(data_config.size))}"
  if not is_built(exact, data_dir) and is_built(f"{builder}/original", data_dir):
    return f"{builder}/original", data_dir
  return exact, data_dir


def build_from_config(data_config, *, progress: bool = True) -> pathlib.Path:
  """Builds the TFDS data set a data config reads (``jaxvad prepare`` with ``data.format=tfds``).

  The manual directory is ``data.root``: the unpacked archive, or for UCSD a frame-folder copy. A finished
  build is reused.
  """
  name, data_dir = resolve(data_config)
  builder, _, config = name.partition("/")
  root = pathlib.Path(str(data_config.get("root", "") or "")).expanduser()
  if not str(data_config.get("root", "")) or not root.is_dir():
    raise DataError(f"{name} is not built in {data_dir} and data.root {str(root)!r} is not a folder: set "
                    f"data.root to the unpacked archive, or run `jaxvad build-tfds --dataset {builder} "
                    f"--manual-dir <archive> --data-dir {data_dir} --size {config.split('/')[0]}`")
  from jaxvad.data.tfds_builders import build as build_lib  # pylint: disable=g-import-not-at-top
  import_tfds()
  log.info("building TFDS data set %s in %s from %s", name, data_dir, root)
  return build_lib.build(builder, root, data_dir, size=config.split("/")[0], progress=progress)


def load_from_config(data_config, split: str, *, progress: bool = True) -> Split:
  """One split of a data config with ``format = "tfds"``; builds the data set from ``data.root`` if missing."""
  name, data_dir = resolve(data_config)
  if not is_built(name, data_dir) and str(data_config.get("root", "")):
    build_from_config(data_config, progress=progress)
  return load_split(name, data_dir, split, size=tuple(data_config.size), dataset=data_config.dataset)


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
  tfds = import_tfds()
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
