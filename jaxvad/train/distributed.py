"""Multi-process (multi-host) set-up: ``jax.distributed.initialize`` and per-process data rows.

One process per host (a GPU node, or a TPU VM worker of a pod slice) runs the same program. After
`initialize`, ``jax.devices()`` lists the devices of every process, the 1-D ``data`` mesh of
`jaxvad.train.mesh` spans them all, and the jitted step's gradient mean becomes a cross-host
all-reduce; nothing else in the trainer changes. Each process reads only the rows of every global
batch that live on its own devices (`local_rows`), and `jaxvad.train.mesh.shard_batch` assembles the
global batch with ``jax.make_array_from_process_local_data``.

How a process finds the others, first match wins:

1. Explicit: ``--coordinator HOST:PORT --num-processes N --process-id I`` (CLI), or the environment
   variables ``JAXVAD_COORDINATOR``, ``JAXVAD_NUM_PROCESSES``, ``JAXVAD_PROCESS_ID``.
2. ``--distributed`` (or ``JAXVAD_DISTRIBUTED=1``) alone: argument-less
   ``jax.distributed.initialize()``, which auto-detects SLURM, Open MPI and Cloud TPU pod slices.
3. Neither: single process, nothing is done.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import jax

from jaxvad.train import mesh as mesh_lib
from jaxvad.errors import ConfigError

log = logging.getLogger(__name__)

ENV_COORDINATOR = "JAXVAD_COORDINATOR"
ENV_NUM_PROCESSES = "JAXVAD_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXVAD_PROCESS_ID"
ENV_DISTRIBUTED = "JAXVAD_DISTRIBUTED"
# jax's SLURM auto-detection assumes one process per GPU (local_device_ids = [SLURM_LOCALID]); one
# process per node must list the node's GPUs, e.g. JAXVAD_LOCAL_DEVICE_IDS=0,1,2,3.
ENV_LOCAL_DEVICE_IDS = "JAXVAD_LOCAL_DEVICE_IDS"


def add_flags(parser: argparse.ArgumentParser) -> None:
  """Adds ``--distributed --coordinator --num-processes --process-id`` to a sub-command."""
  g = parser.add_argument_group("multi-host (see README, 'Multi-host training')")
  g.add_argument("--distributed", action="store_true",
                 help="call jax.distributed.initialize() with auto-detection (SLURM, TPU pod slice)")
  g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help=f"address of process 0's coordinator (or ${ENV_COORDINATOR})")
  g.add_argument("--num-processes", type=int, default=None, metavar="N",
                 help=f"total number of processes (or ${ENV_NUM_PROCESSES})")
  g.add_argument("--process-id", type=int, default=None, metavar="I",
                 help=f"index of this process in [0, N) (or ${ENV_PROCESS_ID})")


def _get(source: Any, key: str):
  if source is None:
    return None
  if isinstance(source, dict):
    return source.get(key)
  if hasattr(source, "get") and not isinstance(source, argparse.Namespace):
    return source.get(key, None)  # ConfigDict
  return getattr(source, key, None)


def resolve(source: Any = None, environ: dict | None = None) -> dict | None:
  """The ``jax.distributed.initialize`` keyword arguments asked for, or None for single process.

  Args:
    source: parsed CLI arguments, a dict or a ConfigDict with any of the fields ``distributed``,
      ``coordinator``, ``num_processes``, ``process_id``; these take precedence over the environment.
    environ: the environment (default ``os.environ``).
  Returns:
    ``{}`` for auto-detection, ``{"coordinator_address", "num_processes", "process_id"}`` for an
    explicit set-up (plus ``local_device_ids`` from ``$JAXVAD_LOCAL_DEVICE_IDS``), None when nothing
    was asked for.
  """
  environ = os.environ if environ is None else environ
  coordinator = _get(source, "coordinator") or environ.get(ENV_COORDINATOR) or None
  num = _get(source, "num_processes")
  num = int(num if num is not None else environ.get(ENV_NUM_PROCESSES) or 0) or None
  pid = _get(source, "process_id")
  pid = pid if pid is not None else environ.get(ENV_PROCESS_ID)
  pid = None if pid in (None, "") else int(pid)
  auto = bool(_get(source, "distributed")) or environ.get(ENV_DISTRIBUTED, "") not in ("", "0")
  local = environ.get(ENV_LOCAL_DEVICE_IDS)
  local = {"local_device_ids": [int(i) for i in local.split(",")]} if local else {}
  if coordinator is None and num is None and pid is None:
    return local if auto else None
  if num == 1 and not auto and coordinator is None:
    return None
  kwargs = {"coordinator_address": coordinator, "num_processes": num, "process_id": pid}
  missing = [k for k, v in kwargs.items() if v is None]
  if missing and not auto:
    raise ConfigError(f"multi-host set-up needs --coordinator, --num-processes and --process-id "
                     f"(or ${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID}); missing "
                     f"{', '.join(missing)}, or pass --distributed to auto-detect the rest")
  if pid is not None and num is not None and not 0 <= pid < num:
    raise ConfigError(f"process id {pid} is not in [0, {num})")
  return {**{k: v for k, v in kwargs.items() if v is not None}, **local}


def initialize(source: Any = None, *, environ: dict | None = None) -> bool:
  """Joins the processes of a multi-host job with ``jax.distributed.initialize``; see the module doc.

  Must run before anything touches a device. Safe to call twice, and a no-op for a single process.

  Args:
    source: parsed CLI arguments, a dict or a ConfigDict (see `resolve`).
    environ: the environment (default ``os.environ``).
  Returns:
    True if this process is part of a multi-process job.
  """
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  kwargs = resolve(source, environ)
  if kwargs is None:
    return False
  # Cross-process collectives on CPU need an implementation; gloo (TCP) ships with jaxlib. It is the
  # default in recent jax; older releases defaulted to none, and the option may disappear later.
  if "jax_cpu_collectives_implementation" in jax.config.values:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  log.info("process %d of %d: %d local / %d global devices", jax.process_index(), jax.process_count(),
           jax.local_device_count(), jax.device_count())
  return True


def is_main_process() -> bool:
  """True on process 0, the one that logs, shows progress and writes metric files."""
  return jax.process_index() == 0


def local_rows(mesh, batch_size: int) -> slice | None:
  """The rows of a global batch that live on this process's devices, or None if all do.

  With a 1-D ``data`` mesh ordered by process and P processes holding the same number of devices,
  process p gets rows ``[p * B / P, (p + 1) * B / P)``; the rows are read from the batch sharding
  itself, so any device order works as long as each process's rows are contiguous.

  Args:
    mesh: the ``data`` mesh.
    batch_size: B, the global batch size (a multiple of the number of devices).
  Returns:
    a slice of ``[0, B)``, or None for a single process.
  """
  if jax.process_count() == 1:
    return None
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"batch of {batch_size} does not split over {n} devices; use a multiple of {n}")
  index_map = mesh_lib.batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
  bounds = sorted({(idx[0].start or 0, batch_size if idx[0].stop is None else idx[0].stop)
                   for idx in index_map.values()})
  start, stop = bounds[0][0], bounds[-1][1]
  if sum(b - a for a, b in bounds) != stop - start:
    raise ValueError(f"the batch rows of process {jax.process_index()} are not contiguous: {bounds}")
  return slice(start, stop)
