"""Data parallelism: a 1-D ``data`` mesh over all devices, batch sharded, state replicated.

The mesh is built with ``jax.sharding.Mesh`` (Auto axes) rather than
``jax.make_mesh``, whose default became explicit axes in recent JAX releases.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvad.errors import ConfigError


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A mesh with one ``data`` axis over the first ``num_devices`` devices (default all).

  In a multi-process job (`jaxvad.train.distributed`) ``jax.devices()`` lists every process's devices,
  so the mesh spans all hosts; ``num_devices`` must then be unset or the global device count.
  """
  devices = jax.devices()
  if num_devices is not None and jax.process_count() > 1 and num_devices != len(devices):
    raise ConfigError(f"num_devices = {num_devices} in a job of {jax.process_count()} processes: a multi-host "
                     f"mesh spans all {len(devices)} devices; unset num_devices")
  if num_devices is not None:
    if num_devices > len(devices):
      raise ConfigError(f"asked for {num_devices} devices, only {len(devices)} available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put_replicated(tree, mesh: Mesh):
  """A host pytree as arrays replicated over the mesh. In a multi-process job every process passes the
  same values (``jax.device_put`` cannot target other processes' devices; a jitted identity can)."""
  if jax.process_count() == 1:
    return jax.device_put(tree, replicated(mesh))
  return jax.jit(lambda x: x, out_shardings=replicated(mesh))(tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data``; the rest replicated."""
  return NamedSharding(mesh, P("data"))


def shard_batch(batch: dict, mesh: Mesh, global_batch_size: int | None = None) -> dict:
  """Places a host batch on the mesh, split along its leading axis.

  In a single process the host batch is the global batch and goes to the devices with
  ``jax.device_put``. In a multi-process job each process passes either its own rows of the global batch
  (``distributed.local_rows``, with ``global_batch_size`` the global B) or, when ``global_batch_size``
  is unset or equal to its length, the whole batch (the same on every process); the global array is
  assembled with ``jax.make_array_from_process_local_data``, each device taking its rows.

  Args:
    batch: pytree of host arrays with a leading batch axis.
    mesh: the ``data`` mesh.
    global_batch_size: B of the global batch (default: the host batch's own length).
  Returns:
    the batch as global ``jax.Array``s sharded over ``data``; B must be a multiple of the device count.
  """
  n = mesh.devices.size
  sharding = batch_sharding(mesh)
  multi_process = jax.process_count() > 1

  def put(x):
    b = x.shape[0] if global_batch_size is None else global_batch_size
    if b % n:
      raise ConfigError(f"batch of {b} does not split over {n} devices; use a multiple of {n}")
    if not multi_process:
      if x.shape[0] != b:
        raise ValueError(f"host batch of {x.shape[0]} rows, expected the global batch of {b}")
      return jax.device_put(x, sharding)
    return _from_process_local(sharding, np.asarray(x), (b,) + tuple(x.shape[1:]))

  return jax.tree.map(put, batch)


def _from_process_local(sharding: NamedSharding, local: np.ndarray, global_shape: tuple[int, ...]) -> jax.Array:
  """``jax.make_array_from_process_local_data``, or its single-device-arrays equivalent on old jax."""
  if hasattr(jax, "make_array_from_process_local_data"):
    return jax.make_array_from_process_local_data(sharding, local, global_shape)
  # Fallback: this process's rows start at the lowest row any of its devices holds.
  index_map = sharding.addressable_devices_indices_map(global_shape)
  offset = 0 if local.shape[0] == global_shape[0] else min(idx[0].start or 0 for idx in index_map.values())
  arrays = [jax.device_put(local[(slice((idx[0].start or 0) - offset, (idx[0].stop or global_shape[0]) - offset),)],
                           device) for device, idx in index_map.items()]
  return jax.make_array_from_single_device_arrays(global_shape, sharding, arrays)
