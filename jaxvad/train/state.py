"""The training state: a plain pytree of step, parameters, optimiser state and model state."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: int32 scalar, number of optimiser steps taken.
    params: the model parameters.
    opt_state: the optax state.
    model_state: non-parameter collections (e.g. ``batch_stats``), possibly empty.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam with optional global-norm clipping (the references use plain Adam)."""
  tx = optax.adam(config.learning_rate, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999))
  clip = config.get("grad_clip", 0.0)
  if clip and clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx


def init_state(module, tx, rng: jax.Array, sample_inputs: jax.Array) -> TrainState:
  """Initialises parameters and optimiser state for inputs shaped like ``sample_inputs``."""
  variables = module.init(rng, sample_inputs, train=False)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    model_state=model_state)


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
