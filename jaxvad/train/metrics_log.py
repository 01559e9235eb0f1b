"""Metrics as JSON lines (one object per logged step), safe across resumes; TensorBoard scalars if possible."""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import time

log = logging.getLogger(__name__)


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

  def write(self, step: int, metrics: dict, warnings: list[str] | None = None) -> None:
    """One line: the step, the (float) metrics and, if any, the run's health ``warnings``."""
    record = {"step": int(step)}
    for k, v in metrics.items():
      v = float(v)
      record[k] = v if math.isfinite(v) else str(v)
    if warnings:
      record["warnings"] = list(warnings)
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """All records of a metrics file."""
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


class ScalarWriter:
  """TensorBoard-readable scalars in ``logdir`` through the first importable writer library.

  tensorboardX, else tensorboard's own event writer, else tensorflow's ``tf.summary``; without any of
  them ``enabled`` is False and `write` does nothing (the JSON lines stay the record).
  """

  def __init__(self, logdir: str | pathlib.Path, resume_step: int = 0):
    self.logdir = str(logdir)
    self.backend = None
    self._writer = None
    try:
      import tensorboardX  # pylint: disable=import-outside-toplevel
      self._writer = tensorboardX.SummaryWriter(self.logdir, purge_step=resume_step + 1 if resume_step else None)
      self.backend = "tensorboardX"
      return
    except ImportError:
      pass
    try:
      from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=import-outside-toplevel
      self._writer = EventFileWriter(self.logdir)
      self.backend = "tensorboard"
      return
    except ImportError:
      pass
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      self._writer = tf.summary.create_file_writer(self.logdir)
      self.backend = "tensorflow"
    except ImportError:
      pass

  @property
  def enabled(self) -> bool:
    return self._writer is not None

  def write(self, step: int, metrics: dict) -> None:
    scalars = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    if self.backend == "tensorboardX":
      for k, v in scalars.items():
        self._writer.add_scalar(k, v, step)
    elif self.backend == "tensorboard":
      from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=import-outside-toplevel
      values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
      self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary_pb2.Summary(value=values)))
    elif self.backend == "tensorflow":
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      with self._writer.as_default():
        for k, v in scalars.items():
          tf.summary.scalar(k, v, step=int(step))
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
