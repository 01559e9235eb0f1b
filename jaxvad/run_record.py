"""A workdir's record of its run: ``W/config.json`` is the config its checkpoints were made with.

The workdir is the source of truth. ``train`` (resume), ``evaluate``, ``adapt`` and ``meta`` read
``W/config.json`` when no ``--config`` is given; a given config is compared with it, and a change in a
field that affects the trained state or the data (model, data, optimiser, seed, batch size...) is refused
with a one-line ``key: old -> new`` diff. Fields that only say how long to run, how often to log or save,
where the cache lives, or how to evaluate (`FREE_FIELDS`) may change freely.

``config.json`` is written only once the run's state is known to match it: by the trainer after the
checkpoint restore has succeeded (atomically), never before; a failed restore leaves the old record.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import json
import logging
import os
import pathlib

import ml_collections

from jaxvad.errors import WorkdirError
from jaxvad.utils import atomic_write_text

log = logging.getLogger(__name__)

RECORD = "config.json"

# Fields that do not change what the checkpoints hold or which data they were trained on (fnmatch patterns over
# dotted keys). Everything else is refused when it differs from the record.
FREE_FIELDS = (
    "train.num_steps", "train.num_epochs", "train.keep_checkpoints",
    "meta.num_steps", "meta.batching", "meta.hessian", "meta.remat",  # The last three: how the same step is computed.
    "*.log_every", "*.log_*", "*.checkpoint_every", "*.keep_checkpoints", "*.tensorboard", "*.progress",
    "num_devices",
    "data.cache_dir", "data.tfds_dir", "target.*",       # Where prepared data lives; the few-shot target.
    "model.conv",                                        # How convolutions are computed: same function.
    "eval.*", "fewshot.*", "online.*",                   # Evaluation only.
)
PATH_FIELDS = ("data.root",)  # Compared as resolved paths.
MISSING = "<absent>"
# Fields added later: a record without them was made with this value (compared as equal to it).
ABSENT_MEANS = {"meta.learner": "meta_sgd", "meta.adapted": "dpu_head", "meta.remat": False}

_allow_changes = contextvars.ContextVar("jaxvad_allow_config_change", default=False)


@contextlib.contextmanager
def allowing_changes(allow: bool = True):
  """Within this block `check` logs a warning instead of refusing (the CLI's ``--allow-config-change``)."""
  token = _allow_changes.set(bool(allow))
  try:
    yield
  finally:
    _allow_changes.reset(token)


def record_path(workdir) -> pathlib.Path:
  return pathlib.Path(workdir) / RECORD


def load(workdir) -> ml_collections.ConfigDict | None:
  """The config recorded in ``workdir``, or None when it has none."""
  path = record_path(workdir)
  if not path.is_file():
    return None
  from jaxvad import config_lib  # pylint: disable=import-outside-toplevel
  return config_lib.load_json_config(path)


def _flat(config) -> dict:
  """``{"a.b": value}`` with JSON-normalised values (tuples as lists)."""
  d = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  d = json.loads(json.dumps(d, default=str))
  out = {}

  def walk(prefix, node):
    if isinstance(node, dict) and node:
      for k, v in node.items():
        walk(f"{prefix}.{k}" if prefix else str(k), v)
    else:
      out[prefix] = node
  walk("", d)
  return out


def is_free(key: str) -> bool:
  return any(fnmatch.fnmatchcase(key, p) for p in FREE_FIELDS)


def _same(key, a, b) -> bool:
  if key in PATH_FIELDS and isinstance(a, str) and isinstance(b, str) and a and b:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))
  if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
      and not isinstance(b, bool):
    return float(a) == float(b)
  return a == b


def diff(old, new, *, include_free: bool = False) -> list[tuple[str, object, object]]:
  """``[(key, old_value, new_value)]`` of the fields that differ (by default only those not in FREE_FIELDS)."""
  a, b = _flat(old), _flat(new)
  out = []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key, ABSENT_MEANS.get(key, MISSING)), b.get(key, ABSENT_MEANS.get(key, MISSING))
    if not _same(key, va, vb) and (include_free or not is_free(key)):
      out.append((key, va, vb))
  return out


def format_diff(changes, limit: int = 6) -> str:
  text = ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in changes[:limit])
  if len(changes) > limit:
    text += f" (+{len(changes) - limit} more)"
  return text


def _short(v) -> str:
  s = json.dumps(v) if not isinstance(v, str) or v == MISSING else repr(v)
  return s if len(s) <= 40 else s[:37] + "..."


def check(workdir, config, *, allow: bool | None = None) -> list:
  """Refuses ``config`` if it changes a field of ``workdir``'s record that matters.

  Args:
    workdir: the run's folder (no record: nothing to check).
    config: the config about to be used with it.
    allow: warn instead of refusing; default: inside `allowing_changes`.
  Returns: the refused-field changes that were allowed (empty when none).
  Raises: `WorkdirError` naming the differing keys and how to proceed.
  """
  saved = load(workdir)
  if saved is None:
    return []
  changes = diff(saved, config)
  if not changes:
    return []
  allow = _allow_changes.get() if allow is None else allow
  text = format_diff(changes)
  if allow:
    log.warning("%s was made with another config (%s); continuing as asked (--allow-config-change)",
                workdir, text)
    return changes
  raise WorkdirError(
      f"{workdir} holds a run made with another config: {text}; use a new --workdir, or drop --config/--set to "
      f"continue with {record_path(workdir)}, or pass --allow-config-change to use the new values anyway")


def write(workdir, config) -> None:
  """Records ``config`` as ``workdir``'s (atomically). Call only once the run's state matches it."""
  atomic_write_text(record_path(workdir), config.to_json_best_effort(indent=2))


def write_if_absent(workdir, config) -> None:
  """Records ``config`` when ``workdir`` has no record yet (a fresh run: nothing to restore, nothing to lose)."""
  if not record_path(workdir).exists():
    write(workdir, config)
