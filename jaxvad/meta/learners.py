"""Meta-learners over the adapted parameters theta (``meta.learner``), on `jaxvad.meta.core`'s pure functions.

Notation: one episode = support S (K windows) and query Q of one scene; L_S, L_Q the task losses (paper Eq. 3)
on them; g_S(theta) = grad L_S(theta); H_S its Hessian; T = ``meta.inner_steps`` inner steps
U(theta) = theta - alpha * g_S(theta) (`core.inner_update`, under ``lax.scan`` for T > 1); theta_T = U^T(theta).
Every learner adapts at test time with the same ``core.adapt(theta, alpha, support)``; they differ in the
shape of alpha, whether alpha is learned, and the outer gradient fed to the outer optimiser (Adam,
``meta.learning_rate``) averaged over the E episodes of a meta-batch:

  "meta_sgd"    (default, MPN's MPU; Li et al. 2017) alpha per parameter (shaped like theta), learned.
                d/dtheta L_Q(theta_T) and d/dalpha L_Q(theta_T), through the inner steps (second order;
                T = 1 in closed form: d/dtheta = g_Q - H_S (alpha * g_Q), d/dalpha = -g_S * g_Q, g_Q at theta_1).
                ``meta.first_order=True`` drops the H_S terms (first-order Meta-SGD).
  "maml"        (Finn et al. 2017) one scalar step size alpha = ``meta.alpha_init``, fixed (never updated);
                d/dtheta L_Q(theta_T) through the inner steps: T = 1: g_Q - alpha H_S g_Q.
  "fomaml"      first-order MAML: as "maml" with the inner gradients treated as constants:
                T = 1: d/dtheta = g_Q(theta_1), the query gradient at the adapted point.
  "per_tensor"  a learned step size per parameter tensor: alpha leaves are scalars (a cheap Meta-SGD, in the
                spirit of Li et al.'s per-layer variant); d/dalpha_l = sum over tensor l of -g_S * g_Q (T = 1).
  "reptile"     (Nichol et al. 2018) first order, no query gradient: T plain SGD steps (step size
                ``meta.alpha_init``, fixed) on support + query of the episode together,
                  phi_0 = theta, phi_{i+1} = phi_i - alpha grad L_{S+Q}(phi_i), theta_T = phi_T,
                and the update theta <- theta + epsilon mean_episodes(theta_T - theta). Implemented as the
                pseudo-gradient  g = mean_episodes(theta - theta_T)  fed to the same Adam outer optimiser
                (plain SGD with learning rate epsilon on g is exactly Reptile's update; Adam rescales it
                per parameter). Its monitored "meta_loss" is L_Q after ``core.adapt`` on the support (as for
                the other learners); it does not enter the update.

alpha pytrees: per parameter (leaves shaped like theta's), per tensor (0-d leaves) or one 0-d array (maml,
fomaml, reptile); `core.expand_alpha` broadcasts them in the inner update.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxvad.errors import ConfigError
from jaxvad.meta import core

LEARNERS = ("meta_sgd", "maml", "fomaml", "per_tensor", "reptile")
ALPHA_KINDS = {"meta_sgd": "per_parameter", "per_tensor": "per_tensor", "maml": "fixed", "fomaml": "fixed",
               "reptile": "fixed"}


@dataclasses.dataclass(frozen=True)
class Learner:
  """A resolved ``meta.learner``.

  Attributes:
    name: one of `LEARNERS`.
    alpha_kind: "per_parameter", "per_tensor" (both learned) or "fixed" (one scalar, never updated).
    first_order: the outer gradient treats the inner gradients as constants (fomaml, reptile, or
      ``meta.first_order=True``).
  """

  name: str
  alpha_kind: str
  first_order: bool

  @property
  def learns_alpha(self) -> bool:
    return self.alpha_kind != "fixed"

  @property
  def uses_query_gradient(self) -> bool:
    return self.name != "reptile"


def get(name: str = "meta_sgd", first_order: bool = False) -> Learner:
  """The learner ``name`` (ConfigError naming the valid values otherwise); ``first_order`` from ``meta.first_order``."""
  if name not in LEARNERS:
    raise ConfigError(f"meta.learner={name!r} is not a known meta-learner; use one of {LEARNERS}")
  return Learner(name, ALPHA_KINDS[name], bool(first_order) or name in ("fomaml", "reptile"))


def from_config(mc) -> Learner:
  """The learner of a ``meta`` config section (absent fields: Meta-SGD, as before ``meta.learner`` existed)."""
  return get(mc.get("learner", "meta_sgd"), mc.get("first_order", False))


def init_alpha(learner: Learner, theta, value: float):
  """The initial alpha of ``learner``: shaped like theta (meta_sgd), a 0-d leaf per tensor (per_tensor), or
  one 0-d array (maml, fomaml, reptile: the fixed step size), all equal to ``value`` (``meta.alpha_init``)."""
  if learner.alpha_kind == "per_parameter":
    return core.init_alpha(theta, value)
  if learner.alpha_kind == "per_tensor":
    return jax.tree.map(lambda p: jnp.full((), value, p.dtype), theta)
  dtype = jnp.result_type(*jax.tree.leaves(theta))
  return jnp.full((), value, dtype)


def reptile_direction(task_loss: core.TaskLoss, theta, alpha, frozen, episode: dict, num_steps: int = 1):
  """theta - theta_T for one episode: T plain SGD steps of size alpha on support + query together."""
  batch = jnp.concatenate([episode["support"], episode["query"]], axis=0)  # [K+Q, T+1, H, W, 3]
  theta_t = core.adapt(task_loss, theta, alpha, frozen, batch, num_steps, first_order=True)
  return jax.tree.map(lambda p, q: p - q, theta, theta_t)


def meta_value_and_grad(learner: Learner, task_loss: core.TaskLoss, theta, alpha, frozen, episodes: dict, *,
                        batching: str = "unroll", inner_steps: int = 1, remat: bool = False,
                        hessian: str = "forward"):
  """(monitored meta loss, (g_theta, g_alpha)) of one meta-batch for ``learner`` (module docstring).

  meta loss: mean over episodes of L_Q(core.adapt(theta, alpha, S)) for every learner. g_alpha is zero for a
  fixed alpha. Second-order learners with T = 1, no remat and ``hessian="forward"`` use the closed form of
  `core.meta_value_and_grad` (forward-over-reverse HVP); otherwise ``jax.grad`` through the inner steps
  (``remat``: each inner step rematerialised in the backward pass).
  """
  if not learner.uses_query_gradient:  # Reptile.
    g_theta = core.episode_mean(lambda ep: reptile_direction(task_loss, theta, alpha, frozen, ep, inner_steps),
                            episodes, batching)
    value = core.meta_loss(task_loss, theta, alpha, frozen, episodes, batching=batching, num_steps=inner_steps,
                           first_order=True)
    return jax.lax.stop_gradient(value), (g_theta, jax.tree.map(jnp.zeros_like, alpha))
  if inner_steps == 1 and not remat and hessian == "forward":
    value, (g_theta, g_alpha) = core.meta_value_and_grad(task_loss, theta, alpha, frozen, episodes,
                                                         batching=batching, first_order=learner.first_order)
  else:
    def objective(pair, frozen, episodes):
      th, al = pair
      return core.meta_loss(task_loss, th, al, frozen, episodes, batching=batching, num_steps=inner_steps,
                            first_order=learner.first_order, remat=remat)
    value, (g_theta, g_alpha) = jax.value_and_grad(objective)((theta, alpha), frozen, episodes)
  if not learner.learns_alpha:
    g_alpha = jax.tree.map(jnp.zeros_like, alpha)
  return value, (g_theta, g_alpha)
