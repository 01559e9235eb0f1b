"""Orbax checkpoints with automatic resume.

Orbax writes each step into a temporary folder and renames it when complete, so
an interrupted save never leaves a half checkpoint that a resume would pick up.
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` for one pytree (the train state)."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, target, step: int | None = None):
    """Restores into the structure, shapes, dtypes and shardings of ``target``.

    Args:
      target: a concrete or abstract (``jax.ShapeDtypeStruct``) pytree.
      step: the step to restore (default: the latest).
    Returns: the restored pytree, or None if there is no checkpoint.
    """
    step = self.latest_step if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(_abstract, target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
