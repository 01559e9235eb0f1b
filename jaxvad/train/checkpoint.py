"""Orbax checkpoints with automatic resume, and a fallback over damaged ones.

Orbax writes each step into a temporary folder and renames it when complete, so
an interrupted save never leaves a half checkpoint that a resume would pick up.
A step folder damaged afterwards (a truncated or emptied file, a non-finite value)
is found at restore: it is renamed ``<step>.damaged`` (orbax ignores it) and the
previous good step is restored with a warning. A checkpoint of another model (its
tree of arrays differs from the target) is not damage: it raises `CheckpointError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxvad.errors import CheckpointError

log = logging.getLogger(__name__)


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` for one pytree (the train state)."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    self._options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(self.directory, options=self._options,
                                 item_handlers=ocp.StandardCheckpointHandler())

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, target, step: int | None = None):
    """Restores into the structure, shapes, dtypes and shardings of ``target``.

    Without ``step``, the latest good step: a damaged, empty or non-finite latest step is renamed
    ``<step>.damaged`` and the one before it is tried, with a warning.

    Args:
      target: a concrete or abstract (``jax.ShapeDtypeStruct``) pytree.
      step: the step to restore (default: the latest good one); its damage raises `CheckpointError`.
    Returns: the restored pytree, or None if there is no checkpoint.
    Raises:
      CheckpointError: the checkpoint holds another model, or no step is readable.
    """
    abstract = jax.tree.map(_abstract, target)
    steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    problems = []
    for s in steps:
      try:
        restored = self._restore_step(s, abstract)
      except _Damaged as e:
        problems.append(f"step {s}: {e}")
        if step is not None:
          raise CheckpointError(f"checkpoint {self.directory}/{s} is unusable: {e}") from None
        self._set_aside(s)
        continue
      if problems:
        log.warning("checkpoint %s: %s; restored step %d instead", self.directory, "; ".join(problems), s)
      return restored
    raise CheckpointError(
        f"no usable checkpoint in {self.directory}: {'; '.join(problems)} (set aside as <step>.damaged); "
        f"start again in a new workdir")

  def _restore_step(self, step: int, abstract):
    folder = self.directory / str(step)
    if not any(p.is_file() for p in folder.rglob("*")):
      raise _Damaged("the step folder is empty")
    try:
      meta = self._manager.item_metadata(step)
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(f"unreadable metadata ({_short(e)})") from None
    if meta is None or getattr(meta, "tree", None) is None:
      raise _Damaged("no readable metadata")
    want, have = _signature(abstract), _signature(meta.tree)
    if want != have:
      raise CheckpointError(
          f"checkpoint {folder} holds another model ({_diff(want, have)}): use a new workdir, or the config "
          f"this workdir was trained with (its config.json)")
    try:
      with _quiet_async_errors():
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(f"unreadable data ({_short(e)})") from None
    bad = nonfinite_leaves(restored)
    if bad:
      raise _Damaged(f"non-finite values in {len(bad)} array(s), e.g. {bad[0]}")
    return restored

  def _set_aside(self, step: int) -> None:
    """Renames ``<step>`` to ``<step>.damaged`` (process 0; orbax ignores it) and rereads the step list."""
    if jax.process_index() == 0:
      src = self.directory / str(step)
      dst = self.directory / f"{step}.damaged"
      n = 1
      while dst.exists():
        dst, n = self.directory / f"{step}.damaged{n}", n + 1
      with contextlib.suppress(FileNotFoundError):
        os.replace(src, dst)
    self._manager.close()
    self._manager = self._open()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class _Damaged(Exception):
  """A step that cannot be used (internal: `Checkpointer.restore` falls back over it)."""


def nonfinite_leaves(tree) -> list[str]:
  """The paths of the floating-point arrays of ``tree`` that hold a NaN or Inf."""
  bad = []
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact) and not bool(jnp.all(jnp.isfinite(x))):
      bad.append(_key(path))
  return bad


def _key(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _signature(tree) -> dict[str, tuple]:
  """Path -> shape of every array of a pytree or of orbax's tree metadata."""
  return {_key(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _diff(want: dict, have: dict) -> str:
  missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
  shapes = sorted(k for k in set(want) & set(have) if want[k] != have[k])
  parts = []
  if shapes:
    k = shapes[0]
    parts.append(f"{len(shapes)} array(s) of other shapes, e.g. {k} {have[k]} instead of {want[k]}")
  if missing:
    parts.append(f"{len(missing)} array(s) missing, e.g. {missing[0]}")
  if extra:
    parts.append(f"{len(extra)} unexpected array(s), e.g. {extra[0]}")
  return "; ".join(parts)


def _short(e: Exception) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


@contextlib.contextmanager
def _quiet_async_errors():
  """Silences the "Exception ignored in <coroutine>" tracebacks tensorstore's reads print when one fails."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda *_: None
  try:
    yield
  finally:
    sys.unraisablehook = hook


def _abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
