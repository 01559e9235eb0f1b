"""Data parallelism: a 1-D ``data`` mesh over all devices, batch sharded, state replicated.

The mesh is built with ``jax.sharding.Mesh`` (Auto axes) rather than
``jax.make_mesh``, whose default became explicit axes in recent JAX releases.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A mesh with one ``data`` axis over the first ``num_devices`` devices (default all)."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices, only {len(devices)} available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data``; the rest replicated."""
  return NamedSharding(mesh, P("data"))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Places a host batch on the mesh, split along its leading axis.

  The batch size must be divisible by the number of devices.
  """
  n = mesh.devices.size
  sharding = batch_sharding(mesh)

  def put(x):
    if x.shape[0] % n:
      raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices; use a multiple of {n}")
    return jax.device_put(x, sharding)

  return jax.tree.map(put, batch)
