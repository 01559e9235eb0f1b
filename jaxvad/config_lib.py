"""Config helpers: data set presets, loading ``path.py:arg`` config files, ``--set`` overrides."""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib

import ml_collections

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Community layout (SPEC 1.1) of each benchmark under $JAXVAD_DATA/<name>, with its label format (SPEC 1.2).
DATASETS = {
    "ped1": dict(labels="frame_labels_ped1.npy", masks_dir="", scene_rule="dataset"),
    "ped2": dict(labels="frame_labels_ped2.npy", masks_dir="testing/gt_masks", scene_rule="dataset"),
    "avenue": dict(labels="frame_labels_avenue.npy", masks_dir="", scene_rule="dataset"),
    "shanghaitech": dict(labels="frame_labels_shanghai.npy", masks_dir="", scene_rule="prefix"),
    # UCF-Crime normal videos: a meta-learning source only (one scene per video, no test labels used).
    "ucf_crime": dict(labels="", masks_dir="", scene_rule="video"),
    "synthetic": dict(labels="frame_labels.npy", masks_dir="testing/gt_masks", scene_rule="prefix"),
}


def data_root() -> pathlib.Path:
  """Where real data sets live: $JAXVAD_DATA, default ./data."""
  return pathlib.Path(os.environ.get("JAXVAD_DATA", "data"))


def data_config(dataset: str, *, size: int, t: int = 4) -> ml_collections.ConfigDict:
  """The data part of an experiment config for a named data set."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown data set {dataset!r}; known: {sorted(DATASETS)}")
  preset = DATASETS[dataset]
  root = "" if dataset == "synthetic" else str(data_root() / dataset)
  return ml_collections.ConfigDict(dict(
      dataset=dataset, root=root, cache_dir=os.environ.get("JAXVAD_CACHE", "data_cache"),
      size=(size, size), t=t, scene_rule=preset["scene_rule"], labels=preset["labels"],
      masks_dir=preset["masks_dir"], scenes=(),
      layout="community",  # Or the original archive layout: "ucsd" | "avenue" | "shanghaitech" | "ucf_crime".
      format="cache", tfds_name="", tfds_dir="",  # format "tfds": read a built TFDS dataset instead.
      synthetic=dict(num_scenes=8, train_videos_per_scene=2, test_videos_per_scene=2,
                     frames_per_video=120, seed=0)))


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads ``path/to/config.py[:arg]`` by calling its ``get_config(arg)``.

  A relative path is looked up from the current folder, then from the repository root.
  """
  path_str, _, arg = spec.partition(":")
  path = pathlib.Path(path_str)
  if not path.exists() and (REPO_ROOT / path).exists():
    path = REPO_ROOT / path
  if not path.exists():
    raise FileNotFoundError(f"config file {path_str} not found (looked in . and {REPO_ROOT})")
  module_spec = importlib.util.spec_from_file_location(f"jaxvad_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies ``key.sub=value`` strings; values are Python literals, else strings."""
  for item in overrides or []:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r} is not key=value")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"override {key!r}: no such config field")
    if isinstance(node[leaf], tuple) and isinstance(value, list):
      value = tuple(value)
    node[leaf] = value
  return config
