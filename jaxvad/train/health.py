"""Run health on the host: the NaN guard's checks before every save and log, and training warnings.

The jitted steps (`jaxvad.train.step`, `jaxvad.meta.step`) flag a non-finite loss, gradient or new
state in ``metrics["nonfinite"]`` and keep the old state. The loop keeps each step's metrics on the
device in a `PendingMetrics` and calls `PendingMetrics.check` before every checkpoint save and every
log line, so no state after a bad step is ever written, and the error names the exact bad step and a
checkpoint written before it.
"""

from __future__ import annotations

import logging
from typing import Callable

import jax
import numpy as np

from jaxvad.errors import NonFiniteError

log = logging.getLogger(__name__)

_PARTS = ((1, "loss"), (2, "gradients"), (4, "new parameters or optimiser state"))


def describe_flag(flag: int) -> str:
  """``"loss, gradients"`` for the bits of a ``nonfinite`` metric."""
  return ", ".join(name for bit, name in _PARTS if flag & bit) or "state"


class PendingMetrics:
  """The per-step metrics of the current log window: unchecked ones on the device, checked ones on the host.

  Args:
    last_good_step: ``() -> int | None``, the latest checkpoint step (every saved step was checked).
    where: the checkpoint folder, for the message.
    advice: what to change, e.g. ``"lower optim.learning_rate (now 0.1) or set optim.grad_clip"``.
  """

  def __init__(self, last_good_step: Callable[[], int | None], where: str, advice: str):
    self._last_good_step = last_good_step
    self._where = where
    self._advice = advice
    self._device: list[tuple[int, dict]] = []
    self._host: list[dict] = []

  def add(self, step: int, metrics: dict) -> None:
    """Records the (device) metrics of the step that brought the state to ``step``."""
    self._device.append((step, metrics))

  def check(self) -> None:
    """Fetches the pending metrics; raises `NonFiniteError` naming the first non-finite step."""
    if not self._device:
      return
    steps = [s for s, _ in self._device]
    host = jax.device_get([m for _, m in self._device])
    self._device = []
    for step, m in zip(steps, host):
      flag = int(m.get("nonfinite", 0))
      if flag:
        good = self._last_good_step()
        resume = (f"the last good checkpoint is step {good} in {self._where}: resume from it with the "
                  f"change, or start again in a new workdir"
                  if good is not None else "no checkpoint was written before it: start again with the change")
        raise NonFiniteError(
            f"training diverged at step {step}: non-finite {describe_flag(flag)} (the update was not "
            f"applied and nothing from step {step} on was saved); {self._advice}; {resume}")
      self._host.append({k: v for k, v in m.items() if k != "nonfinite"})

  def window_mean(self) -> dict[str, float]:
    """Checks, then the mean of every metric over the steps since the last call (and forgets them)."""
    self.check()
    host, self._host = self._host, []
    if not host:
      return {}
    return {k: float(np.mean([m[k] for m in host])) for k in host[-1]}


class HealthMonitor:
  """Warnings read from the logged (window-mean) metrics.

  * ``grad_norm`` exactly 0 for ``dead_windows`` consecutive log windows: the network no longer learns.
  * ``health_fn(metrics, model_config) -> list[str]`` of the model (`jaxvad.models.ModelDef.health_fn`).

  Each warning is logged when it appears (again after it went away) and returned, so the loop writes it
  into ``metrics.jsonl``.
  """

  def __init__(self, health_fn: Callable | None = None, model_config=None, *, dead_windows: int = 3,
               grad_key: str = "grad_norm"):
    self._health_fn = health_fn
    self._model_config = model_config
    self._dead_windows = dead_windows
    self._grad_key = grad_key
    self._zero_windows = 0
    self._active: set[str] = set()

  def __call__(self, step: int, metrics: dict[str, float]) -> list[str]:
    warnings = []
    if self._grad_key in metrics:
      self._zero_windows = self._zero_windows + 1 if metrics[self._grad_key] == 0.0 else 0
      if self._zero_windows >= self._dead_windows:
        warnings.append(f"{self._grad_key} is exactly 0 for the last {self._zero_windows} log windows "
                        f"(up to step {step}): the network no longer learns (dead activations?); "
                        f"lower optim.learning_rate and start again in a new workdir")
    if self._health_fn is not None:
      warnings += list(self._health_fn(metrics, self._model_config) or [])
    keys = set()
    for w in warnings:
      key = "dead" if w.startswith(f"{self._grad_key} is exactly 0") else w
      if key not in self._active:
        log.warning("step %d: %s", step, w)
      keys.add(key)
    self._active = keys
    return warnings
