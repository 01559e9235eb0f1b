"""Meta-SGD over parameter pytrees: MPN's Meta Prototype Unit (MPU, paper Sec. 3.3, Eq. 9-11; SPEC 3.5).

The MPN parameters split into the frozen autoencoder (encoder + decoder, pre-trained with the frame
loss and never updated here) and the adapted part theta = DPU + output head (``meta.adapted`` picks
another set, `ADAPTED_SETS`). Meta-SGD learns an initialisation theta_0 and per-parameter step sizes
alpha (a pytree shaped like theta; other meta-learners in `jaxvad.meta.learners`):

  Eq. 9   U(theta, grad; alpha) = theta - alpha * grad                (element-wise product)
  Eq. 10  theta^{i+1} = U(theta^i, grad_theta L(support; theta^i))    (T inner steps, T = 1 by default)
  Eq. 11  theta*, alpha* = argmin_{theta, alpha} E_episodes[L(query; theta^T)]

The outer gradient is taken w.r.t. (theta, alpha) *through* the inner update (second order by
default; ``first_order=True`` stops the gradient at the inner gradient, FOMAML-style).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxvad.errors import ConfigError

Params = Any
TaskLoss = Callable[[Params, Params, jax.Array], jax.Array]

ADAPTED = ("dpu", "head")  # theta by default: the MPU (DPU) and the output head it feeds.
# ``meta.adapted``: which top-level MPN parameter trees form theta (the rest is the frozen part).
ADAPTED_SETS = {
    "dpu": ("dpu",),                                    # The MPU alone.
    "dpu_head": ("dpu", "head"),                        # The reference code (default).
    "dpu_head_decoder": ("dpu", "head", "decoder"),     # The paper's Sec. 3.3 wording, theta = tau U delta.
    "all": ("encoder", "decoder", "dpu", "head"),       # The whole model (rGAN-Meta's choice).
}
BATCHING = ("unroll", "vmap", "map")


def adapted_keys(adapted: str = "dpu_head") -> tuple[str, ...]:
  """The top-level parameter trees of the ``meta.adapted`` set ``adapted`` (`ADAPTED_SETS`)."""
  if adapted not in ADAPTED_SETS:
    raise ConfigError(f"meta.adapted={adapted!r} is not a known set of adapted parameters; use one of "
                      f"{tuple(ADAPTED_SETS)}")
  return ADAPTED_SETS[adapted]


def split_params(params: Params, adapted: str = "dpu_head") -> tuple[dict, dict]:
  """Splits MPN parameters into (theta, frozen) by the ``meta.adapted`` set.

  Args:
    params: the MPN ``params`` collection (top-level keys "encoder", "decoder", "dpu", "head").
    adapted: a key of `ADAPTED_SETS`: "dpu", "dpu_head" (default: theta = DPU + head, frozen = encoder +
      decoder), "dpu_head_decoder" or "all" (theta = every parameter, frozen = {}).

  Returns:
    (theta, frozen), two dicts whose keys partition those of ``params``.
  """
  keys = adapted_keys(adapted)
  missing = [k for k in keys if k not in params]
  if missing:
    raise ValueError(f"params lack the adapted parts {missing} (have {sorted(params)}); "
                     "meta-learning needs an MPN with use_dpu=True")
  if adapted == "all":
    keys = tuple(params)
  theta = {k: params[k] for k in keys}
  frozen = {k: v for k, v in params.items() if k not in keys}
  return theta, frozen


def merge_params(theta: dict, frozen: dict) -> dict:
  """Inverse of `split_params`: the full MPN ``params`` collection."""
  overlap = set(theta) & set(frozen)
  if overlap:
    raise ValueError(f"theta and frozen share keys {sorted(overlap)}")
  return {**frozen, **theta}


def init_alpha(theta: Params, value: float = 1e-6) -> Params:
  """Meta-SGD step sizes alpha of Eq. 9: a pytree shaped like theta, all ``value`` (reference 1e-6)."""
  return jax.tree.map(lambda p: jnp.full_like(p, value), theta)


def expand_alpha(alpha: Params, theta: Params) -> Params:
  """alpha as a pytree shaped like theta's tree, each leaf broadcastable against theta's leaf.

  alpha may be per-parameter (Meta-SGD: leaves shaped like theta's), per-tensor (a scalar leaf per
  parameter tensor) or one scalar for all of theta (MAML's fixed step size): the last is repeated per leaf.
  """
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(alpha)) and alpha is not None:
    return jax.tree.map(lambda _: alpha, theta)
  return alpha


def reduce_to_alpha(g_full: Params, alpha: Params) -> Params:
  """The gradient w.r.t. alpha from d/d(alpha broadcast to theta's shapes): summed over broadcast axes."""
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(alpha)):
    return sum(jnp.sum(g) for g in jax.tree.leaves(g_full)).astype(jnp.result_type(alpha))
  return jax.tree.map(lambda a, g: g if g.shape == jnp.shape(a) else jnp.sum(g).reshape(jnp.shape(a)),
                      alpha, g_full)


def make_task_loss(module, loss_fn: Callable, model_config, model_state: dict | None = None) -> TaskLoss:
  """The MPN loss L (paper Eq. 3) as a function of the adapted parameters.

  Args:
    module: the MPN flax module.
    loss_fn: ``loss_fn(pred, aux, window, model_config) -> (loss, metrics)`` (`models.mpn.loss_fn`).
    model_config: passed to ``loss_fn``.
    model_state: non-parameter collections of the frozen AE (e.g. ``batch_stats``), used read-only.

  Returns:
    ``task_loss(theta, frozen, windows [K, T+1, H, W, 3]) -> scalar``, the loss averaged over the K
    windows. ``frozen`` goes through ``stop_gradient``: the AE is never differentiated.
  """
  model_state = dict(model_state or {})

  def task_loss(theta: Params, frozen: Params, windows: jax.Array) -> jax.Array:
    params = merge_params(theta, jax.lax.stop_gradient(frozen))
    # train=False: the AE is frozen, so normalisation (if any) uses its running statistics.
    pred, aux = module.apply({"params": params, **model_state}, windows[:, :-1], train=False)
    loss, _ = loss_fn(pred, aux, windows, model_config)
    return loss

  return task_loss


def inner_update(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, support: jax.Array,
                 first_order: bool = False) -> Params:
  """One step of Eq. 9-10: theta - alpha * grad_theta L(support; theta).

  Args:
    task_loss: from `make_task_loss`.
    theta: adapted parameters.
    alpha: step sizes: shaped like theta, a scalar per tensor, or one scalar (`expand_alpha`).
    frozen: the frozen AE parameters.
    support: [K, T+1, H, W, 3] support windows (the gradient is averaged over them).
    first_order: stop the outer gradient at the inner gradient (drops the Hessian term).
  """
  grads = jax.grad(task_loss)(theta, frozen, support)
  if first_order:
    grads = jax.lax.stop_gradient(grads)
  return jax.tree.map(lambda p, a, g: p - a * g, theta, expand_alpha(alpha, theta), grads)


def adapt(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, support: jax.Array,
          num_steps: int = 1, first_order: bool = False, remat: bool = False) -> Params:
  """Scene adaptation, Eq. 10: ``num_steps`` inner updates on the support set.

  Args:
    task_loss: from `make_task_loss`.
    theta: adapted parameters (the meta-learned initialisation theta_0).
    alpha: step sizes (as in `inner_update`: per parameter, per tensor or one scalar).
    frozen: the frozen AE parameters.
    support: [K, T+1, H, W, 3]; K = 0 (no shots) returns theta itself (the un-adapted model).
    num_steps: T inner iterations (paper: 1); > 1 runs under ``lax.scan``.
    first_order: see `inner_update`.
    remat: rematerialise each inner step in the backward pass (less memory for second order).

  Returns:
    theta_hat, shaped like theta.
  """
  if num_steps < 0:
    raise ConfigError(f"num_steps must be >= 0, got {num_steps}")
  if num_steps == 0 or support.shape[0] == 0:  # Static: K = 0 is the un-adapted model.
    return theta

  def step(th):
    return inner_update(task_loss, th, alpha, frozen, support, first_order)

  if remat:
    step = jax.checkpoint(step)
  if num_steps == 1:
    return step(theta)
  theta_hat, _ = jax.lax.scan(lambda th, _: (step(th), None), theta, None, length=num_steps)
  return theta_hat


def outer_loss(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, episode: dict,
               num_steps: int = 1, first_order: bool = False, remat: bool = False) -> jax.Array:
  """The objective of Eq. 11 for one episode: L(query; adapt(theta, alpha, support)).

  Args:
    episode: {"support": [K, T+1, H, W, 3], "query": [Q, T+1, H, W, 3]} (one scene).
    (others as in `adapt`.)
  """
  theta_hat = adapt(task_loss, theta, alpha, frozen, episode["support"], num_steps, first_order, remat)
  return task_loss(theta_hat, frozen, episode["query"])


def meta_loss(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, episodes: dict,
              batching: str = "unroll", num_steps: int = 1, first_order: bool = False,
              remat: bool = False) -> jax.Array:
  """Eq. 11's expectation over a meta-batch: the mean of `outer_loss` over E episodes.

  Args:
    episodes: {"support": [E, K, T+1, H, W, 3], "query": [E, Q, T+1, H, W, 3], ...}; other keys
      (e.g. "scene") are ignored.
    batching: how the E episodes are batched; all give the same value and gradient.
      "unroll": a Python loop over the static E (E copies of the graph; the fastest on CPU).
      "vmap": one batched computation. The adapted theta differs per episode, so the head's
        convolutions get per-episode kernels (grouped convolutions), which XLA:CPU runs very slowly
        in the second-order backward pass (experiments/results/meta_bench.json).
      "map": ``lax.map``, a sequential loop inside the graph (one copy: compile time independent of E).
    (others as in `adapt`.)

  Returns:
    scalar meta loss (query loss after adaptation, averaged over episodes).
  """
  eps = {"support": episodes["support"], "query": episodes["query"]}
  num_episodes = eps["support"].shape[0]
  if eps["query"].shape[0] != num_episodes:
    raise ValueError(f"support has {num_episodes} episodes, query {eps['query'].shape[0]}")

  def one(episode):
    return outer_loss(task_loss, theta, alpha, frozen, episode, num_steps, first_order, remat)

  if batching == "vmap":
    return jnp.mean(jax.vmap(one)(eps))  # [E] -> scalar
  if batching == "map":
    return jnp.mean(jax.lax.map(one, eps))  # [E] -> scalar
  if batching == "unroll":
    losses = [one(jax.tree.map(lambda x, e=e: x[e], eps)) for e in range(num_episodes)]
    return sum(losses) / num_episodes
  raise ConfigError(f"batching must be one of {BATCHING}, got {batching!r}")


def outer_value_and_grad(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, episode: dict,
                         first_order: bool = False) -> tuple[jax.Array, tuple[Params, Params]]:
  """`outer_loss` and its gradient w.r.t. (theta, alpha) for one inner step, in closed form.

  With g_s = grad L_s(theta), theta' = theta - alpha * g_s and g_q = grad L_q(theta'), the chain rule
  through Eq. 9-10 gives exactly

    d/dtheta = g_q - H_s (alpha * g_q)      (H_s: the Hessian of L_s at theta; dropped for first order)
    d/dalpha = -g_s * g_q                   (per-tensor / scalar alpha: summed over the tensor / all of theta)

  The Hessian-vector product is forward-over-reverse (``jax.jvp`` of ``jax.grad``): on XLA:CPU it is
  ~2x cheaper than the reverse-over-reverse pass that ``jax.grad(outer_loss)`` builds
  (experiments/results/bench_cpu*.json), and it is the same number (tested against ``jax.grad``).

  Args: as `outer_loss` (one inner step). Returns: (L_q(theta'), (d/dtheta, d/dalpha)).
  """
  alpha_full = expand_alpha(alpha, theta)  # Per-tensor or one scalar: broadcast; d/dalpha summed back.
  support_loss = lambda th: task_loss(th, frozen, episode["support"])
  g_s = jax.grad(support_loss)(theta)
  theta_hat = jax.tree.map(lambda p, a, g: p - a * g, theta, alpha_full, g_s)
  value, g_q = jax.value_and_grad(lambda th: task_loss(th, frozen, episode["query"]))(theta_hat)
  g_alpha = reduce_to_alpha(jax.tree.map(lambda gs, gq: -gs * gq, g_s, g_q), alpha)
  if first_order:
    return value, (g_q, g_alpha)
  _, hvp = jax.jvp(jax.grad(support_loss), (theta,), (jax.tree.map(lambda a, g: a * g, alpha_full, g_q),))
  return value, (jax.tree.map(lambda g, h: g - h, g_q, hvp), g_alpha)


def meta_value_and_grad(task_loss: TaskLoss, theta: Params, alpha: Params, frozen: Params, episodes: dict,
                        batching: str = "unroll", first_order: bool = False
                        ) -> tuple[jax.Array, tuple[Params, Params]]:
  """`meta_loss` (one inner step) and its gradient w.r.t. (theta, alpha), by `outer_value_and_grad`.

  Equal to ``jax.value_and_grad(meta_loss, argnums=(1, 2))`` (tested) and faster; ``batching`` as in
  `meta_loss`. Returns: (mean query loss, (d/dtheta, d/dalpha)) averaged over the E episodes.
  """
  one = lambda episode: outer_value_and_grad(task_loss, theta, alpha, frozen, episode, first_order)
  return episode_mean(one, episodes, batching)


def episode_mean(fn: Callable, episodes: dict, batching: str = "unroll"):
  """The mean over the E episodes of ``fn({"support": [K, ...], "query": [Q, ...]})`` (a pytree of arrays).

  ``batching`` as in `meta_loss`: "unroll" (a Python loop), "vmap" or "map" (``lax.map``); the per-episode
  results are summed, then divided by E.
  """
  eps = {"support": episodes["support"], "query": episodes["query"]}
  num_episodes = eps["support"].shape[0]
  if batching == "unroll":
    parts = [fn(jax.tree.map(lambda x, e=e: x[e], eps)) for e in range(num_episodes)]
    summed = jax.tree.map(lambda *xs: sum(xs), *parts)
  elif batching in ("vmap", "map"):
    stacked = jax.vmap(fn)(eps) if batching == "vmap" else jax.lax.map(fn, eps)
    summed = jax.tree.map(lambda x: jnp.sum(x, axis=0), stacked)
  else:
    raise ConfigError(f"batching must be one of {BATCHING}, got {batching!r}")
  return jax.tree.map(lambda x: x / num_episodes, summed)


def finetune(task_loss: TaskLoss, theta: Params, frozen: Params, support: jax.Array, lr: float,
             num_steps: int) -> Params:
  """The "Finetune" baseline of paper Table 2: plain SGD on theta with a fixed learning rate.

  ``num_steps`` steps of theta - lr * grad_theta L(support; theta) (no learned alpha, no meta-training).
  ``lr = 0`` or ``num_steps = 0`` (or K = 0) returns theta unchanged.

  Args:
    support: [K, T+1, H, W, 3] the shots.
  """
  if isinstance(lr, (int, float)) and lr == 0:
    return theta
  alpha = jax.tree.map(lambda p: jnp.full_like(p, lr), theta)
  return adapt(task_loss, theta, alpha, frozen, support, num_steps, first_order=True)
