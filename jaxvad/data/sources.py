"""From a data config to a `Split`: synthetic scenes in memory, or a prepared cache of real frames.

Data config fields (see ``configs/``):
  dataset: "synthetic" or a real data set name ("ped2", "ped1", "avenue", "shanghaitech", ...).
  root: the data set folder in the community layout (SPEC 1.1) or, with a raw ``layout``, the unpacked
    archive; for "synthetic" an empty root means "generate in memory", a non-empty one reads what
    ``jaxvad synth`` wrote.
  layout: "community" (default) or an original archive layout: "ucsd" | "avenue" | "shanghaitech" |
    "ucf_crime" (``raw_layouts``). A raw layout brings its own labels, masks and scenes: ``labels`` then
    overrides the archive's labels when set (looked up in root, then the layout's test folder), and
    ``masks_dir`` and ``scene_rule`` are not used.
  cache_dir: where ``prepare`` caches decoded, resized frames.
  size: (H, W) after resizing.  t: input frames per window.
  scene_rule: "dataset" | "prefix" | "video" (SPEC 1.3).
  labels: frame-label file or folder, relative to root (any format of SPEC 1.2); "" for none (community)
    or the archive's own (raw layouts).
  masks_dir: pixel-mask folder relative to root, or "".
  scenes: keep only videos of these scene ids (empty: all), e.g. meta-train on some
    synthetic scenes and test few-shot adaptation on held-out ones.
  synthetic: keyword arguments of `synthetic.make_benchmark` (without size).
  format: "cache" (default: frame cache of ``jaxvad prepare``) or "tfds" (a jaxvad TFDS data set, built from
    ``root`` by ``prepare`` and read without TensorFlow; ``tfds_name`` / ``tfds_dir`` default to
    ``<builder>/<H>x<W>`` and $TFDS_DATA_DIR or ~/tensorflow_datasets, see ``tfds_source``).

The frame cache is checked against its inputs on every load (``fingerprint.py``, one ``stat`` per file): a
changed frame, label or mask file is re-prepared, a missing root is an error, and two roots never share a cache.
"""

from __future__ import annotations

import logging
import pathlib

from jaxvad.data import layout as layout_lib
from jaxvad.data import prepare
from jaxvad.data import raw_layouts
from jaxvad.data import synthetic
from jaxvad.data.errors import DataError
from jaxvad.data.types import Split
from jaxvad.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("training", "testing")
FORMATS = ("cache", "tfds")


def _check_choice(field: str, value, choices) -> None:
  if value not in choices:
    raise ConfigError(f"data.{field}={value!r} is not valid; use one of {', '.join(map(repr, choices))} "
                      f"(--set data.{field}=...)")


def validate(data_config) -> None:
  """Refuses unknown enum values (format, layout, scene_rule) with the list of valid ones.

  Raises:
    ConfigError: naming the field, the value and the valid values.
  """
  _check_choice("format", data_config.get("format", "cache"), FORMATS)
  _check_choice("layout", data_config.get("layout", "community"), raw_layouts.LAYOUTS)
  _check_choice("scene_rule", data_config.get("scene_rule", "dataset"), layout_lib.SCENE_RULES)


def _root(data_config) -> pathlib.Path:
  root = pathlib.Path(data_config.root).expanduser()
  if not root.is_dir():
    raise DataError(f"data root {root} does not exist (set data.root to the folder holding "
                    f"training/frames and testing/frames)")
  return root


def _optional_path(root: pathlib.Path, rel: str, layout: str = "community") -> pathlib.Path | None:
  if not rel:
    return None
  for base in raw_layouts.label_dirs(root, layout):
    if (base / rel).exists():
      return base / rel
  hint = "" if layout == "community" else f"; clear it (--set data.labels=) to use the {layout} archive's own labels"
  raise DataError(f"{root / rel} does not exist (from data config; fix or clear the setting{hint})")


def prepare_from_config(data_config, splits=SPLITS, progress: bool = True) -> list[pathlib.Path]:
  """Decodes and caches the splits of a real (or written synthetic) data set; resumable.

  With ``data.format = "tfds"`` it builds the TFDS data set instead (both splits; returns its folder).
  """
  validate(data_config)
  if data_config.get("format", "cache") == "tfds":
    from jaxvad.data import tfds_source  # pylint: disable=g-import-not-at-top
    return [tfds_source.build_from_config(data_config, progress=progress)]
  root = _root(data_config)
  size = tuple(data_config.size)
  layout = data_config.get("layout", "community")
  out = []
  for split in splits:
    legacy = pathlib.Path(data_config.cache_dir) / data_config.dataset / split / f"{size[0]}x{size[1]}"
    if (legacy / prepare.INDEX).is_file():
      log.info("%s is a cache of an older jaxvad (no fingerprint): no longer read; delete it to free space", legacy)
    is_test = split == "testing"
    masks_dir = data_config.get("masks_dir", "") if layout == "community" else ""
    out.append(prepare.prepare_split(
        root, split, data_config.cache_dir, dataset=data_config.dataset, size=size,
        scene_rule=data_config.scene_rule, layout=layout,
        labels=_optional_path(root, data_config.labels, layout) if is_test else None,
        masks_dir=_optional_path(root, masks_dir) if is_test else None,
        progress=progress))
  return out


def load(data_config, split: str, *, progress: bool = True) -> Split:
  """Returns one split for a data config, preparing the cache first if it is missing."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  validate(data_config)
  size = tuple(data_config.size)
  if data_config.dataset == "synthetic" and not data_config.root:
    if size[0] != size[1]:
      raise ConfigError(f"synthetic scenes are square; got data.size={size}")
    return select_scenes(synthetic.make_benchmark(size=size[0], **data_config.synthetic)[split],
                         data_config.get("scenes", ()))
  if data_config.get("format", "cache") == "tfds":
    from jaxvad.data import tfds_source  # pylint: disable=g-import-not-at-top
    return select_scenes(tfds_source.load_from_config(data_config, split, progress=progress),
                         data_config.get("scenes", ()))
  # Always through prepare: it checks the cache against the inputs (stat only) and redoes what changed.
  out_dir, = prepare_from_config(data_config, splits=(split,), progress=progress)
  return select_scenes(prepare.load_dir(out_dir), data_config.get("scenes", ()))


def select_scenes(split: Split, scenes) -> Split:
  """The videos of ``split`` whose scene is in ``scenes`` (all when empty)."""
  if not scenes:
    return split
  wanted = {str(s) for s in scenes}
  missing = wanted - set(split.scenes)
  if missing:
    raise DataError(f"{split.dataset}/{split.split} has no scene {sorted(missing)}; its scenes: {split.scenes}")
  return Split(split.dataset, split.split, [v for v in split.videos if v.scene in wanted])
