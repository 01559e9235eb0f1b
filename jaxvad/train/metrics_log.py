"""Metrics as JSON lines (one object per logged step), safe across resumes."""

from __future__ import annotations

import json
import math
import os
import pathlib


class MetricsWriter:
  """Appends ``{"step": s, ...}`` lines to a file.

  On construction with ``resume_step``, lines from steps after the restored
  checkpoint (logged by a run that was interrupted before its next save) are
  dropped, so the file of a resumed run equals that of an uninterrupted one.
  """

  def __init__(self, path: str | pathlib.Path, resume_step: int = 0):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if self.path.exists():
      kept = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line).get("step", 0) <= resume_step]
      tmp = self.path.with_suffix(".tmp")
      tmp.write_text("".join(line + "\n" for line in kept))
      os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict) -> None:
    record = {"step": int(step)}
    for k, v in metrics.items():
      v = float(v)
      record[k] = v if math.isfinite(v) else str(v)
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """All records of a metrics file."""
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
