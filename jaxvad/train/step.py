"""The pure, jitted training step ``train_step(state, batch, rng) -> (state, metrics)``."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxvad.train import mesh as mesh_lib
from jaxvad.train.state import TrainState

log = logging.getLogger(__name__)

# Bits of the ``nonfinite`` metric: which part of a step was not finite.
NONFINITE_LOSS = 1
NONFINITE_GRADS = 2
NONFINITE_STATE = 4


def all_finite(tree: Any) -> jax.Array:
  """A bool scalar: every floating-point leaf of ``tree`` is finite (True for a tree without any)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  ok = jnp.asarray(True)
  for x in leaves:
    ok = ok & jnp.all(jnp.isfinite(x))
  return ok


def nonfinite_flag(loss: jax.Array, grads: Any, new_state: Any) -> jax.Array:
  """An int32 scalar: ``NONFINITE_LOSS | NONFINITE_GRADS | NONFINITE_STATE`` bits of what is not finite."""
  flag = jnp.where(jnp.isfinite(loss), 0, NONFINITE_LOSS)
  flag = flag | jnp.where(all_finite(grads), 0, NONFINITE_GRADS)
  flag = flag | jnp.where(all_finite(new_state), 0, NONFINITE_STATE)
  return flag.astype(jnp.int32)


def guard(flag: jax.Array, new_state, old_state):
  """NaN guard: ``new_state`` if ``flag == 0``, else ``old_state`` (step counter from ``new_state``).

  A non-finite state is never applied: the host finds the flag in the metrics and stops before the
  next save (`jaxvad.train.health.PendingMetrics`).
  """
  ok = flag == 0
  kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, old_state)
  return kept.replace(step=new_state.step)


def make_train_step(module, loss_fn: Callable, tx: optax.GradientTransformation, model_config) -> Callable:
  """Returns the un-jitted step; see `jit_train_step` for the sharded, donated version.

  The step draws its randomness from ``fold_in(rng, state.step)``, so a run resumed
  from a checkpoint at step s is identical to an uninterrupted one. Every step checks in-graph that
  the loss, the gradients and the whole new state (parameters, optimiser and model state) are finite;
  otherwise it keeps the old state (but counts the step) and reports the `nonfinite_flag` bits in
  ``metrics["nonfinite"]``; the loop raises on it before anything is saved.
  """

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    window = batch["frames"]  # [B, T+1, H, W, 3]
    rng = jax.random.fold_in(rng, state.step)
    mutable = list(state.model_state.keys())

    def loss(params):
      variables = {"params": params, **state.model_state}
      if mutable:
        (pred, aux), new_model_state = module.apply(
            variables, window[:, :-1], train=True, mutable=mutable, rngs={"dropout": rng})
      else:
        (pred, aux), new_model_state = module.apply(variables, window[:, :-1], train=True,
                                                    rngs={"dropout": rng}), {}
      value, metrics = loss_fn(pred, aux, window, model_config)
      return value, (metrics, new_model_state)

    (value, (metrics, new_model_state)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                           model_state=new_model_state)
    flag = nonfinite_flag(value, grads, new_state)
    new_state = guard(flag, new_state, state)
    metrics = {**metrics, "loss": value, "grad_norm": grad_norm, "nonfinite": flag}
    return new_state, metrics

  return train_step


# XLA:CPU compiles convolutions through YNNPACK by default; its filter gradient (the backward convolution
# w.r.t. the kernel) of a 3x3 convolution over a large map runs ~4x slower per FLOP than its forward:
# 45-55 % of the 256x256 paper-width MPN train step (`experiments/profile_train_step.py`). With YNNPACK
# kept for dot products only, XLA:CPU's Eigen convolutions take over (same function, float32 rounding).
# Set for the train step's program only: inference is unchanged. Env JAXVAD_TRAIN_YNN_CONV=1 turns it off.
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.lru_cache(maxsize=None)
def cpu_train_compiler_options() -> tuple:
  """`CPU_TRAIN_COMPILER_OPTIONS` as items if this jaxlib accepts them (a tiny probe compile), else ()."""
  if os.environ.get("JAXVAD_TRAIN_YNN_CONV", "") not in ("", "0"):
    return ()
  try:
    jax.jit(lambda x: x + 1).lower(jnp.zeros(2)).compile(compiler_options=CPU_TRAIN_COMPILER_OPTIONS)
  except Exception as e:  # pylint: disable=broad-except  (an older or newer jaxlib without this option)
    log.info("CPU train step: this jaxlib rejects %s (%s: %s); convolutions stay on its default path",
             CPU_TRAIN_COMPILER_OPTIONS, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    return ()
  return tuple(CPU_TRAIN_COMPILER_OPTIONS.items())


# The meta step and Meta-SGD test-time adaptation (`jaxvad.meta`) take the same option from 128x128 frames up:
# paper width, 2 CPU cores, interleaved in one process (experiments/results/meta_cpu_options_*.json): meta step
# (K = Q = 2) 1.21x faster at 256x256 and 1.17x at 128x128, K = 1 adaptation 1.03x / 0.99x; at 64x64 it costs
# (0.89x / 0.79x), so smaller frames keep the default.
CPU_META_MIN_PIXELS = 128 * 128


def cpu_meta_compiler_options(frame_hw, devices=None) -> dict | None:
  """`CPU_TRAIN_COMPILER_OPTIONS` for a meta step / adaptation on ``frame_hw`` (H, W) frames, or None.

  None (the default program) off CPU, for frames under `CPU_META_MIN_PIXELS`, for an unknown size, or when
  `cpu_train_compiler_options` gives none (env ``JAXVAD_TRAIN_YNN_CONV=1``, or a jaxlib that rejects them).
  """
  devices = list(devices) if devices is not None else jax.devices()
  if frame_hw is None or any(d.platform != "cpu" for d in devices):
    return None
  if int(frame_hw[0]) * int(frame_hw[1]) < CPU_META_MIN_PIXELS:
    return None
  return dict(cpu_train_compiler_options()) or None


def jit_train_step(train_step: Callable, mesh) -> Callable:
  """Jits the step for a data-parallel mesh: state replicated and donated, batch sharded.

  On CPU meshes the program is compiled with `CPU_TRAIN_COMPILER_OPTIONS` where the jaxlib accepts them.
  """
  rep = mesh_lib.replicated(mesh)
  on_cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
  options = dict(cpu_train_compiler_options()) if on_cpu else {}
  return jax.jit(train_step, in_shardings=(rep, mesh_lib.batch_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,), compiler_options=options or None)
