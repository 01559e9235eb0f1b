"""Atomic file writes: a crash leaves the old file or the new one, never a partial file."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
  """Opens a temporary file beside ``path``; on success ``os.replace``s it onto ``path``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files.
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  with atomic_open(path, "wb") as f:
    f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  with atomic_open(path, "w") as f:
    f.write(text)


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 1) -> None:
  atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
  """``np.save`` (never pickling) through a temporary file."""
  with atomic_open(path, "wb") as f:
    np.save(f, array, allow_pickle=False)
