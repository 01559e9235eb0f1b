"""PGM's prototype-guided memory (paper Sec. III-B, Eq. 8-17, 22-23 and 26-29; SPEC 4).

The memory holds N unit-norm items m_j of dimension C. Queries are the L2-normalised
latent vectors z_i of the encoder (K = h * w per sample).

Two mechanisms train the items, each behind a switch (both on by default, SPEC 4):

* ``rule_update``: the paper's update rule (Eq. 11-12), applied in training only and
  without gradient, over all B * K queries of the (global) batch.
* ``grad_items``: the items are also trained by gradient, through the read (Eq. 10)
  and L_dis (Eq. 17).

How they coexist: the rule-updated items live in the non-parameter collection
``"memory"`` (variable ``items`` [N, C], unit norm; STYLE: updated only in training).
With ``grad_items`` a parameter ``shift`` [N, C] (zeros at init) and a second memory
variable ``anchor`` [N, C] (the value ``shift`` had at the last rule update) are added,
and the items the model uses are

    m = L2norm(items + shift - anchor).

``shift - anchor`` is exactly the optimiser's last step on ``shift`` (the train step
applies it after the forward pass that set ``anchor``), so every optimiser step moves
the items once, and the rule then acts on those moved items: the rule writes
``items <- L2norm(m + sum_i v_ij z_i)`` (unit norm) and ``anchor <- shift``. With the
rule off, ``anchor`` stays 0 and m = L2norm(items_0 + shift) is a plain parameter.
Use no weight decay on ``shift`` (only differences of ``shift`` matter; the project's
optimiser is plain Adam). Nothing is written at evaluation (``train=False``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvad.errors import ConfigError

EPS = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """x / ||x|| along ``axis`` (the paper's f(.) in Eq. 12)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), EPS))


def random_items(rng: jax.Array, num_items: int, dim: int) -> jax.Array:
  """A random unit-norm memory [N, C] (Gaussian directions)."""
  return l2_normalize(jax.random.normal(rng, (num_items, dim), jnp.float32))


def similarity(queries: jax.Array, items: jax.Array) -> jax.Array:
  """Cosine similarity d(z_i, m_j) of Eq. 8: [..., K, C] x [N, C] -> [..., K, N]."""
  return jnp.einsum("...kc,nc->...kn", l2_normalize(queries), l2_normalize(items))


def read(queries: jax.Array, items: jax.Array):
  """Retrieve and read (Eq. 8-10): z^_i = sum_j softmax_j(d_ij) m_j.

  Args:
    queries: [..., K, C] (normalised here, as in Eq. 8).
    items: [N, C] unit-norm memory items.
  Returns: (z_hat [..., K, C], weights w [..., K, N], d [..., K, N]).
  """
  d = similarity(queries, items)  # [..., K, N]
  w = jax.nn.softmax(d, axis=-1)  # Eq. 9: over items j.
  return jnp.einsum("...kn,nc->...kc", w, items), w, d


UPDATE_SCOPES = ("all", "nearest")


def update(queries: jax.Array, items: jax.Array, scope: str = "all") -> jax.Array:
  """The update rule (Eq. 11-12), without gradient: m_j <- L2norm(m_j + sum_i v_ij z_i).

  Args:
    queries: [M, C] all queries of the batch (M = B * K; normalised here).
    items: [N, C] current items.
    scope: "all" (the paper, Eq. 11: v = softmax over all M queries) or "nearest" (MNAD's
      reference rule, not PGM's: only the queries whose nearest item is m_j, with weights
      v_ij / max_i v_ij). With cosines in [-1, 1] the paper's softmax over thousands of
      queries is nearly uniform, so every item moves towards the same mean query.
  Returns: [N, C] updated unit-norm items.
  """
  queries, items = jax.lax.stop_gradient(l2_normalize(queries)), jax.lax.stop_gradient(items)
  d = similarity(queries, items)  # [M, N]
  v = jax.nn.softmax(d, axis=0)  # [M, N], Eq. 11: over queries i.
  if scope == "nearest":
    assigned = jax.nn.one_hot(nearest(d), items.shape[0], dtype=v.dtype)  # [M, N]
    v = assigned * v / jnp.max(v, axis=0, keepdims=True)
  elif scope != "all":
    raise ConfigError(f"update scope must be one of {UPDATE_SCOPES}, got {scope!r}")
  return l2_normalize(items + jnp.einsum("mn,mc->nc", v, queries))  # [N, C]


def nearest(d: jax.Array) -> jax.Array:
  """Index of each query's nearest item, argmax_j d_ij (Eq. 23): [..., K, N] -> [..., K]."""
  return jnp.argmax(d, axis=-1)


def scatter_traces(queries: jax.Array, items: jax.Array, assign: jax.Array):
  """Tr(S_B) (Eq. 13-14) and Tr(S_W) (Eq. 15-16) of each sample.

  K is the number of queries of one sample (K = h * w, paper Sec. III-B2), and n_j
  counts the queries of that sample whose nearest item is m_j. The assignment is a
  constant (argmax); gradients reach the queries and the items.

  Args:
    queries: [B, K, C] normalised queries.
    items: [N, C] items.
    assign: [B, K] nearest-item index of every query.
  Returns: (tr_sb [B], tr_sw [B]).
  """
  k, n = queries.shape[1], items.shape[0]
  onehot = jax.nn.one_hot(assign, n, dtype=queries.dtype)  # [B, K, N]
  counts = jnp.sum(onehot, axis=1)  # [B, N], n_j
  spread = jnp.sum(jnp.square(items - jnp.mean(items, axis=0)), axis=-1)  # [N], ||m_j - mean(m)||^2
  tr_sb = jnp.sum(counts / k * spread, axis=-1)  # [B]
  sq = jnp.sum(jnp.square(queries - items[assign]), axis=-1)  # [B, K], ||z_i - m_nearest(i)||^2
  within = jnp.einsum("bk,bkn->bn", sq, onehot)  # [B, N], Tr(S_W^j)
  tr_sw = jnp.sum(counts / k * within, axis=-1)  # [B]
  return tr_sb, tr_sw


def discriminative_loss(queries: jax.Array, items: jax.Array, assign: jax.Array, eps: float = 1e-6):
  """L_dis = Tr(S_W) / Tr(S_B) (Eq. 17) per sample, [B]; the denominator floored at ``eps``."""
  tr_sb, tr_sw = scatter_traces(queries, items, assign)
  return tr_sw / jnp.maximum(tr_sb, eps)


def nearest_distance(queries: jax.Array, items: jax.Array, assign: jax.Array) -> jax.Array:
  """DIST (Eq. 22): per-sample mean over queries of ||z_i - m_nearest|| (L2), [B, K, C] -> [B]."""
  diff = queries - items[assign]  # [B, K, C]
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1) + EPS), axis=-1)


def distances(memory_items, queries) -> dict:
  """The paper's Fig. 9 measures (Eq. 26-29).

  Args:
    memory_items: [N, C] items.
    queries: [M, C] test queries (any number).
  Returns: {"D_m": sum_j cos(m_j, mean m) (Eq. 26), "D_m_mean": the same averaged over
    items, "D_q": mean over queries of cos(z_i, m_nearest) (Eq. 28), "num_items",
    "num_queries"}.
  """
  items = jnp.asarray(memory_items, jnp.float32)
  q = jnp.asarray(queries, jnp.float32)
  d_m = similarity(items, jnp.mean(items, axis=0, keepdims=True))[:, 0]  # [N]
  d_q = jnp.max(similarity(q, items), axis=-1)  # [M], cosine to the nearest item
  return {"D_m": float(jnp.sum(d_m)), "D_m_mean": float(jnp.mean(d_m)), "D_q": float(jnp.mean(d_q)),
          "num_items": int(items.shape[0]), "num_queries": int(q.shape[0])}


class Memory(nn.Module):
  """The memory module f_m (Eq. 2): z [B, h, w, C] -> (z^ [B, h, w, C], aux).

  Attributes:
    num_items: N.
    rule_update: apply the update rule (Eq. 11-12) in training.
    grad_items: also train the items by gradient (see the module docstring).
    update_scope: "all" (paper Eq. 11) or "nearest" (MNAD's rule), see `update`.
  """

  num_items: int = 100
  rule_update: bool = True
  grad_items: bool = True
  update_scope: str = "all"

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False):
    """Returns z^ (float32, z's shape) and aux: "queries" [B, K, C], "items" [N, C] (the
    items read, differentiable with grad_items), "weights" [B, K, N], "similarity" d
    [B, K, N], "nearest" [B, K], "memory_distance" [B] (Eq. 22), "items_used" (scalar:
    items nearest to at least one query of the batch)."""
    b, h, w, c = z.shape
    store = self.variable("memory", "items",
                          lambda: random_items(self.make_rng("params"), self.num_items, c))
    items = store.value  # [N, C]
    if self.grad_items:
      anchor = self.variable("memory", "anchor", jnp.zeros, (self.num_items, c), jnp.float32)
      shift = self.param("shift", nn.initializers.zeros, (self.num_items, c), jnp.float32)
      items = l2_normalize(items + shift - anchor.value)
    else:
      items = jax.lax.stop_gradient(items)

    queries = l2_normalize(z.astype(jnp.float32).reshape(b, h * w, c))  # [B, K, C]
    z_hat, weights, d = read(queries, items)  # [B, K, C], [B, K, N], [B, K, N]
    assign = nearest(d)  # [B, K]
    used = jnp.any(jax.nn.one_hot(assign.reshape(-1), self.num_items, dtype=jnp.bool_), axis=0)  # [N]

    if train and self.rule_update and not self.is_initializing():
      # Written on the full (global) batch: under jit with a sharded batch, XLA reduces
      # over all devices, so every replica holds the same memory.
      store.value = update(queries.reshape(b * h * w, c), items, self.update_scope)
      if self.grad_items:
        anchor.value = jax.lax.stop_gradient(shift)

    aux = {"queries": queries, "items": items, "weights": weights, "similarity": d, "nearest": assign,
           "memory_distance": nearest_distance(queries, items, assign),
           "items_used": jnp.sum(used.astype(jnp.int32))}
    return z_hat.reshape(b, h, w, c), aux
