"""Config helpers: data set presets, loading ``path.py:arg`` config files, ``--set`` overrides."""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import pathlib

import ml_collections

from jaxvad.errors import ConfigError  # noqa: F401  (configs raise config_lib.ConfigError)

log = logging.getLogger(__name__)

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
    raise ConfigError(f"unknown data set {dataset!r}; known: {sorted(DATASETS)}")
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


def _shipped_dir() -> pathlib.Path:
  """The shipped configs: the ``jaxvad.configs`` package of an install, else ``configs/`` of the source tree."""
  try:
    spec = importlib.util.find_spec("jaxvad.configs")
  except ImportError:
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return pathlib.Path(list(spec.submodule_search_locations)[0])
  return REPO_ROOT / "configs"


def resolve_config_path(path_str: str) -> pathlib.Path:
  """``path_str`` from the current folder, else a shipped config of that name (``configs/mpn.py``, ``mpn.py``, ``mpn``).

  Logs which file is used, and warns when a ``configs/<name>.py`` of the current folder shadows a shipped one.
  """
  shipped_dir = _shipped_dir()
  name = pathlib.Path(path_str).name
  if not name.endswith((".py", ".json")) and pathlib.Path(path_str).parent == pathlib.Path("."):
    name += ".py"
  shipped = shipped_dir / name
  path = pathlib.Path(path_str)
  if path.is_file():
    if shipped.is_file() and path.resolve() != shipped.resolve() and path.parent.name == "configs":
      log.warning("config %s: using %s from the current folder; it shadows the shipped %s (pass that path to use "
                  "the shipped one)", path_str, path.resolve(), shipped)
  elif shipped.is_file() and (path.parent in (pathlib.Path("."), pathlib.Path("configs"))):
    path = shipped
  else:
    raise ConfigError(f"config file {path_str} not found (looked in {pathlib.Path.cwd()} and the shipped configs "
                      f"{shipped_dir}: {', '.join(sorted(p.name for p in shipped_dir.glob('*.py') if p.stem != '__init__'))})")
  log.info("config %s loaded from %s", path_str, path.resolve())
  return path


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads ``path/to/config.py[:arg]`` by calling its ``get_config(arg)``, or a saved ``config.json``.

  A relative path is looked up from the current folder, then among the shipped configs (`resolve_config_path`).
  """
  path_str, _, arg = spec.partition(":")
  path = resolve_config_path(path_str)
  if path.suffix == ".json":
    return load_json_config(path)
  if path.suffix != ".py":
    raise ConfigError(f"config file {path} is not a Python file: pass a .py file defining get_config(), "
                      f"or a run's config.json")
  module_spec = importlib.util.spec_from_file_location(f"jaxvad_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"config file {path} is not valid Python (line {e.lineno}: {e.msg}); "
                      f"a config is a .py file defining get_config()") from None
  except Exception as e:  # pylint: disable=broad-exception-caught
    if path.resolve().parent == _shipped_dir().resolve():
      raise  # A shipped config that fails is a bug in jaxvad: keep the traceback.
    raise ConfigError(f"config file {path} fails to run ({type(e).__name__}: {e}); a config is a .py file "
                      f"defining get_config()".splitlines()[0]) from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"config file {path} defines no get_config() function")
  return module.get_config(arg) if arg else module.get_config()


def _tuples(x):
  """JSON lists back to the tuples configs use."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def load_json_config(path) -> ml_collections.ConfigDict:
  """A config saved as JSON (a workdir's ``config.json``)."""
  path = pathlib.Path(path)
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read config {path}: {e}".splitlines()[0]) from None
  if not isinstance(data, dict):
    raise ConfigError(f"config {path} does not hold a JSON object")
  return ml_collections.ConfigDict(_tuples(data))


def _example(old, value) -> str:
  """How to write a value of ``old``'s type on the command line."""
  if isinstance(old, tuple):
    if isinstance(value, (int, float)) and old:
      return "(" + ",".join([repr(value)] * len(old)) + ")"
    return "(" + ",".join(repr(v) for v in old) + ")"
  if isinstance(old, str):
    return repr(str(value) if value is not None else old)
  return repr(old)


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
  """Applies ``key.sub=value`` strings; values are Python literals, else strings.

  Raises `ConfigError` (one line: the field, the problem, the form to write) for an unknown field, a value of
  the wrong type, or a key that goes through a non-section field.
  """
  for item in overrides or []:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"override {item!r} is not key=value (e.g. --set train.num_steps=100)")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = config
    *parents, leaf = key.split(".")
    for i, p in enumerate(parents):
      where = ".".join(parents[:i + 1])
      if not isinstance(node, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"override {key!r}: {'.'.join(parents[:i])} is a value ({node!r}), not a section; "
                          f"write --set {'.'.join(parents[:i])}=VALUE")
      if p not in node:
        raise ConfigError(f"override {key!r}: no config section {where!r}")
      node = node[p]
    if not isinstance(node, (ml_collections.ConfigDict, dict)):
      raise ConfigError(f"override {key!r}: {'.'.join(parents)} is a value ({node!r}), not a section; "
                        f"write --set {'.'.join(parents)}=VALUE")
    if leaf not in node:
      known = ", ".join(sorted(node.keys()))
      raise ConfigError(f"override {key!r}: no such config field (fields here: {known})")
    old = node[leaf]
    if isinstance(old, tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[leaf] = value
    except TypeError:
      raise ConfigError(f"override {key}={raw}: {key} takes a value of type {type(old).__name__} (now {old!r}), "
                        f"not {value!r}; write e.g. --set {key}={_example(old, value)}") from None
  return config
