"""Checks run before any work: a mistake found after an hour of training (or after scoring every frame) is
reported at once instead, as one line naming the field or folder, the problem and the fix.

`check_command` runs them for a CLI subcommand: the config has the sections the subcommand reads, values are in
range, the workdir (and the data cache) can be written, and ``evaluate``/``adapt`` find a trained model.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

from jaxvad.errors import ConfigError, DataError, WorkdirError

# The config sections each subcommand reads.
SECTIONS = {
    "prepare": ("data",),
    "train": ("data", "model", "optim", "train"),
    "evaluate": ("data", "model", "eval"),
    "run": ("data", "model", "optim", "train", "eval"),
    "meta": ("data", "model", "optim", "train", "eval", "meta", "fewshot", "target"),
    "adapt": ("data", "model", "eval", "meta", "fewshot"),
    "stream": ("data", "model", "eval", "meta"),
}
SECTION_HINT = {"meta": "configs/meta.py:synthetic", "fewshot": "configs/meta.py:synthetic",
                "target": "configs/meta.py:synthetic"}

# (section, field, minimum): integer fields that must be >= minimum when present.
MINIMUMS = (
    ("train", "batch_size", 1), ("train", "num_steps", 0), ("train", "num_epochs", 0),
    ("train", "log_every", 1), ("train", "checkpoint_every", 1), ("train", "keep_checkpoints", 1),
    ("meta", "num_steps", 0), ("meta", "episodes", 1), ("meta", "k_support", 1), ("meta", "n_query", 1),
    ("meta", "inner_steps", 0), ("meta", "log_every", 1), ("meta", "checkpoint_every", 1),
    ("eval", "batch_size", 1), ("eval", "num_error_maps", 0), ("fewshot", "batch_size", 1),
    ("fewshot", "finetune_steps", 0), ("data", "t", 1),
)


def check_sections(config, command: str, spec: str | None = None) -> None:
  """Raises `ConfigError` when ``config`` lacks a section ``command`` reads (e.g. ``meta`` for ``jaxvad meta``)."""
  missing = [s for s in SECTIONS.get(command, ()) if s not in config]
  if missing:
    hint = SECTION_HINT.get(missing[0])
    raise ConfigError(
        f"config {spec or ''} has no {', '.join(repr(m) for m in missing)} section{'s' if len(missing) > 1 else ''}, "
        f"which `jaxvad {command}` needs" + (f"; use a config that has it, e.g. --config {hint}" if hint else ""))


def check_values(config) -> None:
  """Raises `ConfigError` for values out of range (``train.checkpoint_every=0``, a bad ``data.size``...)."""
  for section, field, lo in MINIMUMS:
    if section not in config or field not in config[section]:
      continue
    v = config[section][field]
    if v is None:
      continue
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
      raise ConfigError(f"{section}.{field} = {v!r}: must be a number >= {lo} (e.g. --set {section}.{field}={max(lo, 1)})")
  for section in ("data", "target"):
    if section in config and "size" in config[section]:
      size = config[section].size
      if (not isinstance(size, (tuple, list)) or len(size) != 2
          or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 8 for s in size)):
        raise ConfigError(f"{section}.size = {size!r}: must be two integers >= 8 (H, W), e.g. "
                          f"--set {section}.size=(64,64)")
  if "fewshot" in config and "shots" in config.fewshot:
    shots = config.fewshot.shots
    if not shots or any(not isinstance(k, int) or k < 0 for k in shots):
      raise ConfigError(f"fewshot.shots = {shots!r}: must be integers >= 0, e.g. --set fewshot.shots=(0,1,5)")


def _probe_writable(folder: pathlib.Path) -> bool:
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".jaxvad-write-check.")
  except OSError:
    return False
  os.close(fd)
  with contextlib.suppress(OSError):
    os.unlink(tmp)
  return True


def check_writable(path, what: str, *, flag: str) -> None:
  """Raises `WorkdirError` unless ``path`` is (or can be created as) a writable folder; creates nothing.

  Args:
    path: the folder.
    what: what it is, for the message ("workdir", "data cache").
    flag: how the user sets it ("--workdir", "data.cache_dir").
  """
  path = pathlib.Path(path).expanduser()
  if path.exists() and not path.is_dir():
    raise WorkdirError(f"{what} {path} is a file, not a folder: set {flag} to a folder")
  existing = path
  while not existing.exists():
    if existing.parent == existing:
      break
    existing = existing.parent
  if not existing.is_dir():
    raise WorkdirError(f"{what} {path} cannot be created: {existing} is a file; set {flag} to another folder")
  if not _probe_writable(existing):
    raise WorkdirError(f"{what} {path} is not writable ({existing} does not accept new files); "
                       f"set {flag} to a folder you can write")


def check_cache(data_config, section: str = "data") -> None:
  """The frame cache of a data config can be written (a read-only cache that already holds the data set is fine)."""
  if data_config.get("format", "cache") == "tfds":
    return
  if data_config.get("dataset") == "synthetic" and not data_config.get("root"):
    return  # Generated in memory, never cached.
  cache = pathlib.Path(data_config.cache_dir).expanduser()
  if (cache / str(data_config.dataset)).is_dir():
    return  # Already holds this data set (possibly a read-only shared cache): reading may be all that is needed.
  check_writable(cache, "data cache", flag=f"{section}.cache_dir")


def _has_step(ckpt_dir: pathlib.Path) -> bool:
  return ckpt_dir.is_dir() and any(p.name.isdigit() and p.is_dir() for p in ckpt_dir.iterdir())


def require_trained(workdir, command: str) -> None:
  """Raises `WorkdirError` when ``workdir`` holds no trained model for ``command`` (evaluate / adapt); creates nothing."""
  workdir = pathlib.Path(workdir)
  if command in ("adapt", "stream"):
    needed = [(workdir / "pretrain" / "checkpoints", "pre-trained"), (workdir / "meta" / "checkpoints", "meta-trained")]
    run = "jaxvad meta"
  else:
    needed = [(workdir / "checkpoints", "trained")]
    run = "jaxvad train"
  if not workdir.is_dir():
    raise WorkdirError(f"workdir {workdir} does not exist: run `{run} --workdir {workdir}` first")
  for ckpt_dir, what in needed:
    if not _has_step(ckpt_dir):
      raise WorkdirError(f"no {what} model in {workdir} ({ckpt_dir} has no checkpoint): "
                         f"run `{run} --workdir {workdir}` first")


def check_video_lengths(split, *, t: int, k: int, what: str) -> None:
  """Raises `DataError` when a video of ``split`` is too short for K support windows plus one scored frame.

  Adaptation uses the first K windows (frames 0 .. K + t - 1) and scores frames from K + t on, so every video
  needs more than K + t frames.
  """
  for v in split.videos:
    n = v.num_frames
    if n <= k + t:
      fix = f"use K <= {n - t - 1}" if n - t - 1 >= 0 else f"the video needs more than t = {t} frames"
      raise DataError(f"video {v.name} has {n} frames: {what} with K = {k} shots and t = {t} leaves no frame to "
                      f"score (needs more than K + t = {k + t}); {fix}")


def check_command(command: str, config, workdir=None, *, spec: str | None = None) -> None:
  """All checks that need no data: sections, values, writable workdir and cache, a trained model to use."""
  check_sections(config, command, spec)
  check_values(config)
  if workdir is not None:
    if command in ("evaluate", "adapt", "stream"):
      require_trained(workdir, command)
    check_writable(workdir, "workdir", flag="--workdir")
  if command in ("prepare", "train", "evaluate", "run", "meta"):
    check_cache(config.data)
  if command == "meta":
    check_cache(config.target, "target")
