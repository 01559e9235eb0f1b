"""Small shared helpers: atomic file writes."""

from __future__ import annotations

import os
import pathlib
import tempfile


def atomic_write_bytes(path: str | pathlib.Path, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | pathlib.Path, text: str) -> None:
  atomic_write_bytes(path, text.encode())
