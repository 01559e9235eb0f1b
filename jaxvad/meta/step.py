"""The pure meta-training step ``meta_step(state, frozen, episodes) -> (state, metrics)`` (paper Eq. 11).

One outer update of the meta-learner (default Meta-SGD: the gradient of the meta-batch's query loss after
adaptation w.r.t. the pair (theta, alpha), through the inner update; other learners in `jaxvad.meta.learners`)
and one Adam step over the pair (paper: lr 1e-5 for both). A fixed alpha (maml, fomaml, reptile) is kept as is.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from jaxvad.meta import core
from jaxvad.meta import learners as learners_lib
from jaxvad.train import mesh as mesh_lib
from jaxvad.errors import ConfigError
from jaxvad.train import step as step_lib


@flax.struct.dataclass
class MetaState:
  """Everything meta-training updates (the frozen AE lives outside).

  Attributes:
    step: int32 scalar, number of outer steps taken.
    theta: the meta-learned initialisation of the adapted parameters (``meta.adapted``; default DPU + head).
    alpha: inner step sizes (`learners.init_alpha`): shaped like theta (Meta-SGD), a scalar per tensor, or one
      scalar (fixed for maml, fomaml, reptile).
    opt_state: the optax state of the outer optimiser over the pair (theta, alpha).
  """

  step: jax.Array
  theta: Any
  alpha: Any
  opt_state: Any


def make_meta_optimizer(learning_rate: float = 1e-5) -> optax.GradientTransformation:
  """The outer optimiser: Adam over (theta, alpha), paper lr 1e-5 for both."""
  return optax.adam(learning_rate)


def init_meta_state(theta: Any, alpha: Any, tx: optax.GradientTransformation) -> MetaState:
  """A fresh `MetaState` (step 0) for the pair (theta, alpha).

  theta and alpha are copied: `jit_meta_step` donates the state, which must not delete the caller's arrays.
  """
  theta, alpha = jax.tree.map(lambda x: jnp.array(x, copy=True), (theta, alpha))
  return MetaState(step=jnp.zeros((), jnp.int32), theta=theta, alpha=alpha, opt_state=tx.init((theta, alpha)))


def make_meta_step(task_loss: core.TaskLoss, tx: optax.GradientTransformation, *, inner_steps: int = 1,
                   first_order: bool = False, batching: str = "unroll", remat: bool = False,
                   hessian: str = "forward", learner: str = "meta_sgd") -> Callable:
  """Returns the un-jitted outer step; see `jit_meta_step` for the sharded, donated version.

  Args:
    task_loss: from `core.make_task_loss`.
    tx: the outer optimiser over the pair (theta, alpha) (`make_meta_optimizer`).
    inner_steps: T inner updates per episode (paper: 1).
    first_order: drop the second-order term of the outer gradient (implied by "fomaml" and "reptile").
    batching: "unroll", "vmap" or "map" over the episodes of a meta-batch (`core.meta_loss`).
    remat: rematerialise the inner steps in the backward pass.
    hessian: "forward" (default): for one inner step, the closed-form gradient of
      `core.meta_value_and_grad` (forward-over-reverse Hessian-vector product); "reverse": ``jax.grad``
      through the inner update (reverse over reverse; always used for inner_steps > 1 or remat).
      Both give the same gradient.
    learner: ``meta.learner``, one of `learners.LEARNERS` (alpha must come from `learners.init_alpha` of it).

  Returns:
    ``meta_step(state, frozen, episodes) -> (state, metrics)`` with episodes
    {"support": [E, K, T+1, H, W, 3], "query": [E, Q, T+1, H, W, 3]}. Metrics: "meta_loss" (query loss
    after adaptation, Eq. 11), "query_loss_before" (query loss of theta itself, for monitoring),
    "theta_grad_norm", "alpha_grad_norm", "nonfinite" (`jaxvad.train.step.nonfinite_flag` bits, non-zero
    if the step was skipped: the state is kept).
  """

  if hessian not in ("forward", "reverse"):
    raise ConfigError(f"hessian must be 'forward' or 'reverse', got {hessian!r}")

  spec = learners_lib.get(learner, first_order)

  def meta_step(state: MetaState, frozen: Any, episodes: dict):
    pair = (state.theta, state.alpha)
    value, (g_theta, g_alpha) = learners_lib.meta_value_and_grad(
        spec, task_loss, state.theta, state.alpha, frozen, episodes, batching=batching, inner_steps=inner_steps,
        remat=remat, hessian=hessian)
    # Monitoring only: the un-adapted theta on the same query windows (K = 0). Unrolled like the
    # episodes, XLA shares the frozen autoencoder's forward pass with the meta loss's (a vmap would
    # be a different computation and run the AE on every query window a second time).
    queries = episodes["query"]  # [E, Q, T+1, H, W, 3]
    if batching == "unroll":
      before = sum(task_loss(state.theta, frozen, queries[e]) for e in range(queries.shape[0])) / queries.shape[0]
    else:
      before = jnp.mean(jax.vmap(lambda q: task_loss(state.theta, frozen, q))(queries))  # [E] -> ()
    updates, opt_state = tx.update((g_theta, g_alpha), state.opt_state, pair)
    theta, alpha = optax.apply_updates(pair, updates)
    if not spec.learns_alpha:
      alpha = state.alpha  # The fixed step size (maml, fomaml, reptile) is never updated.
    new_state = MetaState(step=state.step + 1, theta=theta, alpha=alpha, opt_state=opt_state)
    theta_norm, alpha_norm = optax.global_norm(g_theta), optax.global_norm(g_alpha)
    # NaN guard as in `train.step`: loss, gradients and the whole new state checked in-graph; a
    # non-finite step keeps the old state (counts the step) so the host stops before the next save.
    flag = step_lib.nonfinite_flag(value, (g_theta, g_alpha), new_state)
    new_state = step_lib.guard(flag, new_state, state)
    metrics = {"meta_loss": value, "query_loss_before": before, "theta_grad_norm": theta_norm,
               "alpha_grad_norm": alpha_norm, "nonfinite": flag}
    return new_state, metrics

  return meta_step


def jit_meta_step(meta_step: Callable, mesh, frame_hw=None) -> Callable:
  """Jits the step for a data-parallel mesh: episodes split over ``data``, the rest replicated.

  The state is donated. The number of episodes E must be divisible by the number of devices
  (place them with `jaxvad.train.mesh.shard_batch`). ``frame_hw``: the (H, W) of the frames, which picks
  the CPU compiler options (`jaxvad.train.step.cpu_meta_compiler_options`; None: the default program).
  """
  rep = mesh_lib.replicated(mesh)
  options = step_lib.cpu_meta_compiler_options(frame_hw, mesh.devices.flat)
  return jax.jit(meta_step, in_shardings=(rep, rep, mesh_lib.batch_sharding(mesh)),
                 out_shardings=(rep, rep), donate_argnums=(0,), compiler_options=options)
