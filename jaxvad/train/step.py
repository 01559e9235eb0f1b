"""The pure, jitted training step ``train_step(state, batch, rng) -> (state, metrics)``."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvad.train import mesh as mesh_lib
from jaxvad.train.state import TrainState


def make_train_step(module, loss_fn: Callable, tx: optax.GradientTransformation, model_config) -> Callable:
  """Returns the un-jitted step; see `jit_train_step` for the sharded, donated version.

  The step draws its randomness from ``fold_in(rng, state.step)``, so a run resumed
  from a checkpoint at step s is identical to an uninterrupted one. A step whose loss
  or gradient is not finite leaves the state unchanged and reports ``nonfinite = 1``;
  the loop raises on it (NaN guard) before anything is saved.
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
    ok = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    # NaN guard: keep the old state (but count the step) so the host can stop cleanly.
    new_state = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, state)
    new_state = new_state.replace(step=state.step + 1)
    metrics = {**metrics, "loss": value, "grad_norm": grad_norm, "nonfinite": 1 - ok.astype(jnp.int32)}
    return new_state, metrics

  return train_step


def jit_train_step(train_step: Callable, mesh) -> Callable:
  """Jits the step for a data-parallel mesh: state replicated and donated, batch sharded."""
  rep = mesh_lib.replicated(mesh)
  return jax.jit(train_step, in_shardings=(rep, mesh_lib.batch_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))
