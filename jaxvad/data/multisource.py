"""Several data sets as one source of scenes: ``data.sources`` (pre-training and meta-training, SPEC 3.5).

A source is a list of data configs, each declared in the config alone (no code change for a new data set):

  c.data.sources = (
      dict(name="realscenes", root="../shared/data/realscenes", scene_rule="prefix"),
      dict(name="synthetic", root="", weight=0.5),          # In-memory synthetic scenes.
      dict(name="mycams", root="/data/mycams", layout="community", scene_rule="video",
           scenes=("cam1", "cam3")),
  )

Entry fields: ``name`` (required; the data set's name, first level of the cache and the scene namespace), and
any field of a data config (``root``, ``layout``, ``scene_rule``, ``scenes``, ``labels``, ``masks_dir``,
``format``, ``tfds_name``, ``tfds_dir``, ``synthetic``), plus an optional sampling ``weight``. Missing fields
come from the preset of ``name`` when it is a known data set (``config_lib.DATASETS``), else from a generic
unlabelled one (scene rule "dataset"); ``size``, ``t`` and ``cache_dir`` always come from the parent ``data``.

The union keeps every source apart: scene ids and video names are namespaced by the source name
(``realscenes/avenue``, ``ped2/01``), so two data sets' "01" never merge, and each source is prepared into its
own cache folder (the cache is keyed by data set name and data root, ``prepare.cache_path``).

Sampling weights: with no ``weight`` anywhere, episodes draw scenes uniformly over the union (as one data set
does). When any source sets one (missing ones count 1), a source is drawn with probability proportional to its
weight and then one of its scenes uniformly: ``MultiSplit.scene_weights`` gives each scene w_s / n_scenes(s).
"""

from __future__ import annotations

import dataclasses
import logging

import ml_collections

from jaxvad.data import sources as sources_lib
from jaxvad.data.types import Split, VideoData
from jaxvad.errors import ConfigError

log = logging.getLogger(__name__)

SHARED_FIELDS = ("size", "t", "cache_dir")  # Always the parent data config's: one frame shape for the union.
ENTRY_FIELDS = ("name", "weight", "root", "layout", "scene_rule", "scenes", "labels", "masks_dir", "format",
                "tfds_name", "tfds_dir", "synthetic")


@dataclasses.dataclass
class MultiSplit(Split):
  """A `Split` over several data sets, with namespaced scene ids and optional per-scene sampling weights.

  Attributes:
    scene_weights: scene -> relative probability of drawing it for an episode, or None (uniform).
    source_names: the data sets it unites, in config order.
  """

  scene_weights: dict[str, float] | None = None
  source_names: tuple[str, ...] = ()


def has_sources(data_config) -> bool:
  return bool(data_config.get("sources", ()))


def _get(entry, key, default=None):
  return entry[key] if key in entry else default


def source_configs(data_config) -> list[tuple[ml_collections.ConfigDict, float | None]]:
  """One full data config (and its weight, or None) per entry of ``data_config.sources``.

  Raises:
    ConfigError: an entry without a name, with an unknown field, a duplicate name or a bad weight.
  """
  from jaxvad import config_lib  # pylint: disable=g-import-not-at-top  (config_lib imports no data code)

  out, seen = [], set()
  for i, entry in enumerate(data_config.sources):
    entry = dict(entry)
    name = str(entry.get("name", ""))
    if not name:
      raise ConfigError(f"data.sources[{i}] has no name; give each source dict(name=..., root=..., ...)")
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    if unknown:
      raise ConfigError(f"data.sources[{i}] ({name}) has unknown field(s) {unknown}; valid: {', '.join(ENTRY_FIELDS)}")
    if name in seen:
      raise ConfigError(f"data.sources names {name!r} twice; source names must be unique (they namespace scenes)")
    seen.add(name)
    size = tuple(data_config.size)
    if name in config_lib.DATASETS:
      c = config_lib.data_config(name, size=size[0], t=data_config.t)
    else:  # A data set declared in the config alone: unlabelled by default.
      c = config_lib.data_config("synthetic", size=size[0], t=data_config.t)
      c.update(dataset=name, labels="", masks_dir="", scene_rule="dataset", root="")
    if name == "synthetic" and "synthetic" in data_config:
      c.synthetic = ml_collections.ConfigDict(data_config.synthetic.to_dict()
                                              if hasattr(data_config.synthetic, "to_dict") else dict(data_config.synthetic))
    for key in SHARED_FIELDS:
      c[key] = data_config[key]
    for key, value in entry.items():
      if key in ("name", "weight"):
        continue
      if key == "synthetic":
        c.synthetic.update(dict(value))
      else:
        c[key] = tuple(value) if isinstance(value, list) else value
    if name != "synthetic" and not c.root:
      raise ConfigError(f"data.sources[{i}] ({name}) has no root; set root= to the data set folder")
    weight = entry.get("weight", None)
    if weight is not None and not (isinstance(weight, (int, float)) and weight > 0):
      raise ConfigError(f"data.sources[{i}] ({name}) weight={weight!r}; use a number > 0 or leave it out")
    sources_lib.validate(c)
    out.append((c, None if weight is None else float(weight)))
  return out


def namespaced(split: Split, name: str) -> list[VideoData]:
  """The videos of ``split`` with scene ``name/scene`` and video name ``name/video`` (frames shared, not copied)."""
  return [dataclasses.replace(v, name=f"{name}/{v.name}", scene=f"{name}/{v.scene}") for v in split.videos]


def load(data_config, split: str, *, progress: bool = True) -> Split:
  """The ``split`` of ``data_config``: the union of ``data.sources`` when set, else that one data set.

  With sources, ``data.scenes`` (if set) filters the union by namespaced scene id (``realscenes/avenue``).
  """
  if not has_sources(data_config):
    return sources_lib.load(data_config, split, progress=progress)
  videos, weights, names = [], {}, []
  any_weight = False
  for c, weight in source_configs(data_config):
    part = sources_lib.load(c, split, progress=progress)
    if not part.videos:
      raise ConfigError(f"data source {c.dataset} ({c.root or 'in memory'}) has no {split} videos"
                        f"{' in scenes ' + str(list(c.scenes)) if c.get('scenes', ()) else ''}")
    vids = namespaced(part, c.dataset)
    scenes = sorted({v.scene for v in vids})
    any_weight |= weight is not None
    for s in scenes:
      weights[s] = (1.0 if weight is None else weight) / len(scenes)
    videos.extend(vids)
    names.append(c.dataset)
    log.info("source %s: %d %s videos, scenes %s", c.dataset, len(vids), split, ", ".join(scenes))
  out = MultiSplit("+".join(names), split, videos, scene_weights=weights if any_weight else None,
                   source_names=tuple(names))
  wanted = data_config.get("scenes", ())
  if wanted:
    kept = sources_lib.select_scenes(out, wanted)
    out = MultiSplit(out.dataset, split, kept.videos, source_names=out.source_names,
                     scene_weights=None if out.scene_weights is None else
                     {s: w for s, w in out.scene_weights.items() if s in set(kept.scenes)})
  return out


def prepare_from_config(data_config, progress: bool = True) -> list:
  """`sources.prepare_from_config` for one data set or each on-disk source of ``data.sources`` (`jaxvad prepare`)."""
  if not has_sources(data_config):
    return sources_lib.prepare_from_config(data_config, progress=progress)
  out = []
  for c, _ in source_configs(data_config):
    if c.dataset == "synthetic" and not c.root:
      continue  # Generated in memory: nothing to prepare.
    out.extend(sources_lib.prepare_from_config(c, splits=("training",), progress=progress))
  return out
