"""The Dynamic Prototype Unit (DPU) of MPN (SPEC 3.1, MPN paper Sec. 3.1-3.2).

The DPU turns a feature map into a small pool of per-sample prototypes and back:

  Attention  M normalcy maps W = softmax over the N = H*W positions of a bias-free
             1x1 convolution (M*C parameters: the paper's "1.28K" for C=128, M=10).
  Ensemble   p_m = sum_n W[n, m] x_n                                  (Eq. 1)
  Retrieving beta = softmax_m cos(x_n, p^_m), x~_n = sum_m beta_nm p^_m  (Eq. 2)
  Output     x + x~ (channel-wise sum).

Following the reference code (and SPEC 3.1), features x, prototypes p^ and the
retrieved x~ are L2-normalised over channels, and the relevance beta is a softmax of
cosine similarities (the paper's Eq. 2 writes a plain ratio of dot products). No
memory bank: the prototypes are recomputed from every input.

The pure helpers below are the unit's maths and are reused by the losses.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  """x / max(||x||, eps) along `axis`; finite value and gradient at x = 0."""
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def ensemble(logits: jax.Array, feats: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Normalcy maps and prototypes (MPN Eq. 1).

  Args:
    logits: [B, N, M] attention logits psi_m(x_n).
    feats: [B, N, C] normalised features x_n.
  Returns:
    (weights [B, N, M] softmax over the N positions, prototypes [B, M, C] unnormalised).
  """
  weights = jax.nn.softmax(logits, axis=1)  # [B, N, M]
  protos = jnp.einsum("bnm,bnc->bmc", weights, feats)  # [B, M, C]
  return weights, protos


def retrieve(feats: jax.Array, protos_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Relevance and the normalcy encoding (MPN Eq. 2, cosine form of SPEC 3.1).

  Args:
    feats: [B, N, C] unit-norm features.
    protos_hat: [B, M, C] unit-norm prototypes.
  Returns:
    (beta [B, N, M] softmax over m of cos(x_n, p^_m), retrieved [B, N, C] unit norm).
  """
  cos = jnp.einsum("bnc,bmc->bnm", feats, protos_hat)  # [B, N, M]
  beta = jax.nn.softmax(cos, axis=-1)  # [B, N, M]
  retrieved = l2_normalize(jnp.einsum("bnm,bmc->bnc", beta, protos_hat))  # [B, N, C]
  return beta, retrieved


def compactness_error(feats: jax.Array, protos_hat: jax.Array, beta: jax.Array) -> jax.Array:
  """Per-sample compactness error L_c (MPN Eq. 6-7): mean_n ||x_n - p^_{argmax_m beta_nm}||^2.

  The argmax is taken under `stop_gradient` (Eq. 7: indices only); the gradient
  flows into both the features and the selected prototypes. SPEC 3.2 sums the squared
  difference over channels; the reference code's `MSELoss` also divides it by C.

  Args:
    feats: [B, ..., C] unit-norm features (any spatial layout).
    protos_hat: [B, M, C] unit-norm prototypes.
    beta: [B, ..., M] relevance of every position to every prototype.
  Returns: [B] mean over positions.
  """
  b, c = feats.shape[0], feats.shape[-1]
  feats = feats.reshape(b, -1, c)  # [B, N, C]
  nearest = jax.lax.stop_gradient(jnp.argmax(beta.reshape(b, feats.shape[1], -1), axis=-1))  # [B, N]
  picked = jnp.take_along_axis(protos_hat, nearest[..., None], axis=1)  # [B, N, C]
  return jnp.mean(jnp.sum(jnp.square(feats - picked), axis=-1), axis=-1)


def prototype_usage(beta: jax.Array) -> jax.Array:
  """Effective number of prototypes in use: exp(entropy) of the nearest-prototype histogram.

  A training diagnostic: 1 when every position picks the same prototype (collapse),
  M when the positions spread evenly over the M prototypes.

  Args:
    beta: [B, ..., M] relevance of every position to every prototype.
  Returns: [] the effective count over the whole batch.
  """
  m = beta.shape[-1]
  nearest = jnp.argmax(beta.reshape(-1, m), axis=-1)  # [B*N]
  freq = jnp.mean(jax.nn.one_hot(nearest, m, dtype=jnp.float32), axis=0)  # [M]
  entropy = -jnp.sum(jnp.where(freq > 0, freq * jnp.log(jnp.where(freq > 0, freq, 1.0)), 0.0))
  return jnp.exp(entropy)


def diversity_error(protos_hat: jax.Array, gamma: float = 1.0) -> jax.Array:
  """Per-sample diversity error L_d (MPN Eq. 8, pairs m < m' as in SPEC 3.2).

  L_d = 2 / (M (M-1)) sum_{m<m'} max(0, gamma - ||p^_m - p^_m'||^2); 0 when M = 1.
  (Eq. 8 as printed sums over all ordered pairs including m = m'; the unordered
  pairs with the 2 / (M (M-1)) normaliser make it the mean hinge over pairs.)

  Args:
    protos_hat: [B, M, C] unit-norm prototypes.
    gamma: margin.
  Returns: [B].
  """
  m = protos_hat.shape[1]
  if m < 2:
    return jnp.zeros(protos_hat.shape[:1], protos_hat.dtype)
  diff = protos_hat[:, :, None, :] - protos_hat[:, None, :, :]  # [B, M, M, C]
  dist = jnp.sum(jnp.square(diff), axis=-1)  # [B, M, M]
  hinge = jnp.maximum(0.0, gamma - dist)  # [B, M, M]
  upper = jnp.triu(jnp.ones((m, m), bool), k=1)  # [M, M] pairs m < m'
  return 2.0 / (m * (m - 1)) * jnp.sum(jnp.where(upper, hinge, 0.0), axis=(1, 2))


class DPU(nn.Module):
  """Dynamic Prototype Unit: [B, H, W, C] features -> (x + x~ [B, H, W, C], aux).

  The unit's maths runs in float32 whatever the compute dtype (normalisations and
  softmaxes over N positions); the output is cast back to the input dtype.

  Attributes:
    num_prototypes: M, the number of attention maps / prototypes (MPN Table 6).
    eps: guard of the L2 normalisations.
    dtype: compute dtype of the 1x1 attention convolution.
    attention_init_std: None keeps the default LeCun-normal init of the attention
      kernel (std 1/sqrt(C): on unit-norm features every logit has std ~1/sqrt(C), so
      the softmax over N positions starts almost uniform and all M prototypes start as
      the mean feature); a float draws the kernel from N(0, std^2), i.e. logits with
      std ~`attention_init_std`, so the M normalcy maps start distinct.
  """

  num_prototypes: int = 10
  eps: float = 1e-6
  dtype: Dtype = jnp.float32
  attention_init_std: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
    """Args: x: [B, H, W, C]. Returns (F + F~ [B, H, W, C], aux dict of intermediates)."""
    b, h, w, c = x.shape
    feats = l2_normalize(x.astype(jnp.float32), eps=self.eps)  # [B, H, W, C]
    kernel_init = (nn.linear.default_kernel_init if self.attention_init_std is None
                   else nn.initializers.normal(self.attention_init_std))
    logits = nn.Conv(self.num_prototypes, (1, 1), use_bias=False, dtype=self.dtype,
                     kernel_init=kernel_init, name="attention")(feats)  # [B, H, W, M]
    flat = feats.reshape(b, h * w, c)  # [B, N, C]
    weights, protos = ensemble(logits.astype(jnp.float32).reshape(b, h * w, -1), flat)
    protos_hat = l2_normalize(protos, eps=self.eps)  # [B, M, C]
    beta, retrieved = retrieve(flat, protos_hat)  # [B, N, M], [B, N, C]
    retrieved = retrieved.reshape(b, h, w, c)  # [B, H, W, C]
    beta = beta.reshape(b, h, w, -1)  # [B, H, W, M]
    aux = {
        "normalcy_maps": weights.reshape(b, h, w, -1),  # [B, H, W, M]
        "prototypes": protos_hat,  # [B, M, C]
        "retrieval": beta,  # [B, H, W, M]
        "nearest": jnp.argmax(beta, axis=-1),  # [B, H, W]
        "features": feats,  # [B, H, W, C]
        "retrieved": retrieved,  # [B, H, W, C]
    }
    return (feats + retrieved).astype(x.dtype), aux
