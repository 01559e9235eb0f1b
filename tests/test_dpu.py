"""Dynamic Prototype Unit against plain NumPy references (SPEC 3.1-3.2, MPN Eq. 1-2, 6-8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import dpu

EPS = 1e-6


def _l2n(v):
  return v / max(np.sqrt(np.sum(v * v)), EPS)


def _softmax(v):
  e = np.exp(v - np.max(v))
  return e / np.sum(e)


def _reference_dpu(x, kernel):
  """One sample, loops: x [H, W, C], kernel [C, M] -> output and intermediates."""
  h, w, c = x.shape
  m = kernel.shape[1]
  n_pos = h * w
  feats = np.zeros((n_pos, c))
  for i in range(h):
    for j in range(w):
      feats[i * w + j] = _l2n(x[i, j])
  logits = np.zeros((n_pos, m))
  for n in range(n_pos):
    for k in range(m):
      logits[n, k] = np.dot(feats[n], kernel[:, k])
  weights = np.zeros((n_pos, m))
  for k in range(m):  # Attention: softmax over the N positions, per map.
    weights[:, k] = _softmax(logits[:, k])
  protos = np.zeros((m, c))
  for k in range(m):  # Ensemble (Eq. 1).
    for n in range(n_pos):
      protos[k] += weights[n, k] * feats[n]
    protos[k] = _l2n(protos[k])
  beta = np.zeros((n_pos, m))
  retrieved = np.zeros((n_pos, c))
  for n in range(n_pos):  # Retrieving (Eq. 2): softmax over m of cosines.
    beta[n] = _softmax(np.array([np.dot(feats[n], protos[k]) for k in range(m)]))
    retrieved[n] = _l2n(sum(beta[n, k] * protos[k] for k in range(m)))
  return dict(out=(feats + retrieved).reshape(h, w, c), weights=weights.reshape(h, w, m), protos=protos,
              beta=beta.reshape(h, w, m), feats=feats.reshape(h, w, c), retrieved=retrieved.reshape(h, w, c))


def _reference_compactness(feats, protos, beta):
  """One sample: feats [N, C], protos [M, C], beta [N, M]."""
  total = 0.0
  for n in range(feats.shape[0]):
    k = int(np.argmax(beta[n]))
    total += np.sum((feats[n] - protos[k]) ** 2)
  return total / feats.shape[0]


def _reference_diversity(protos, gamma):
  m = protos.shape[0]
  total = 0.0
  for a in range(m):
    for b in range(a + 1, m):
      total += max(0.0, gamma - np.sum((protos[a] - protos[b]) ** 2))
  return 2.0 * total / (m * (m - 1))


@pytest.fixture(scope="module")
def unit_and_output():
  unit = dpu.DPU(num_prototypes=3)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 3, 4, 5)), jnp.float32)
  # NumPy-drawn kernel (flax's jitted initialisers compile slowly on a loaded CPU).
  variables = {"params": {"attention": {"kernel": jnp.asarray(rng.normal(size=(1, 1, 5, 3)), jnp.float32)}}}
  out, aux = unit.apply(variables, x)
  return x, variables, out, aux


def test_parameter_count_is_m_times_c():
  """One bias-free 1x1 conv: M*C parameters (1,280 for the reference C=128, M=10)."""
  shapes = jax.eval_shape(dpu.DPU(num_prototypes=10).init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 128)))
  leaves = jax.tree.leaves(shapes["params"])
  assert sum(x.size for x in leaves) == 1_280
  assert len(leaves) == 1


def test_forward_matches_numpy_reference(unit_and_output):
  x, variables, out, aux = unit_and_output
  kernel = np.asarray(variables["params"]["attention"]["kernel"])[0, 0]  # [C, M]
  for b in range(x.shape[0]):
    ref = _reference_dpu(np.asarray(x[b], np.float64), kernel)
    np.testing.assert_allclose(out[b], ref["out"], atol=1e-5)
    np.testing.assert_allclose(aux["normalcy_maps"][b], ref["weights"], atol=1e-5)
    np.testing.assert_allclose(aux["prototypes"][b], ref["protos"], atol=1e-5)
    np.testing.assert_allclose(aux["retrieval"][b], ref["beta"], atol=1e-5)
    np.testing.assert_allclose(aux["features"][b], ref["feats"], atol=1e-5)
    np.testing.assert_allclose(aux["retrieved"][b], ref["retrieved"], atol=1e-5)
    np.testing.assert_array_equal(aux["nearest"][b], np.argmax(ref["beta"], axis=-1))


def test_aux_shapes(unit_and_output):
  _, _, out, aux = unit_and_output
  assert out.shape == (2, 3, 4, 5)
  assert aux["normalcy_maps"].shape == aux["retrieval"].shape == (2, 3, 4, 3)
  assert aux["prototypes"].shape == (2, 3, 5)
  assert aux["nearest"].shape == (2, 3, 4)
  np.testing.assert_allclose(jnp.sum(aux["normalcy_maps"], axis=(1, 2)), 1.0, atol=1e-5)


def test_losses_match_numpy_reference(unit_and_output):
  _, _, _, aux = unit_and_output
  l_c = dpu.compactness_error(aux["features"], aux["prototypes"], aux["retrieval"])
  l_d = dpu.diversity_error(aux["prototypes"], gamma=1.5)
  for b in range(2):
    feats = np.asarray(aux["features"][b]).reshape(-1, 5)
    beta = np.asarray(aux["retrieval"][b]).reshape(-1, 3)
    protos = np.asarray(aux["prototypes"][b])
    np.testing.assert_allclose(l_c[b], _reference_compactness(feats, protos, beta), rtol=1e-5)
    np.testing.assert_allclose(l_d[b], _reference_diversity(protos, 1.5), rtol=1e-5)


def test_diversity_is_zero_for_one_prototype_and_counts_close_pairs():
  assert float(dpu.diversity_error(jnp.ones((2, 1, 4)))[0]) == 0.0
  protos = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # Pair distances^2: 0, 2, 2.
  np.testing.assert_allclose(dpu.diversity_error(protos, gamma=1.0), [2.0 / 6.0 * 1.0])


def test_compactness_gradient_matches_closed_form():
  """d L_c: 2 (x_n - p_k(n)) / N into the features and minus the same, summed per prototype, into
  the selected prototypes only; nothing through the (constant) argmax selection into beta."""
  feats = dpu.l2_normalize(jax.random.normal(jax.random.PRNGKey(2), (2, 6, 4)))
  protos = dpu.l2_normalize(jax.random.normal(jax.random.PRNGKey(3), (2, 3, 4)))
  beta, _ = dpu.retrieve(feats, protos)
  g_feats, g_protos, g_beta = jax.grad(lambda f, p, b: jnp.sum(dpu.compactness_error(f, p, b)),
                                       argnums=(0, 1, 2))(feats, protos, beta)
  f, p, bt = (np.asarray(v, np.float64) for v in (feats, protos, beta))
  ref_f, ref_p = np.zeros_like(f), np.zeros_like(p)
  for b in range(2):
    for n in range(6):
      k = int(np.argmax(bt[b, n]))
      ref_f[b, n] = 2 * (f[b, n] - p[b, k]) / 6
      ref_p[b, k] -= 2 * (f[b, n] - p[b, k]) / 6
  np.testing.assert_allclose(g_feats, ref_f, atol=1e-6)
  np.testing.assert_allclose(g_protos, ref_p, atol=1e-6)
  np.testing.assert_array_equal(g_beta, 0.0)


def test_l2_normalize_is_guarded_at_zero():
  value, grad = jax.value_and_grad(lambda v: jnp.sum(dpu.l2_normalize(v)))(jnp.zeros((3,)))
  assert float(value) == 0.0
  assert np.all(np.isfinite(grad))


def test_ensemble_and_retrieve_match_numpy_per_sample():
  """Eq. 1 (softmax over positions n, per map and per sample) and Eq. 2 (softmax over prototypes m)."""
  feats = dpu.l2_normalize(jax.random.normal(jax.random.PRNGKey(4), (3, 5, 4)))  # [B, N, C]
  logits = 3.0 * jax.random.normal(jax.random.PRNGKey(5), (3, 5, 2))  # [B, N, M]
  weights, protos = dpu.ensemble(logits, feats)
  protos_hat = dpu.l2_normalize(protos)
  beta, retrieved = dpu.retrieve(feats, protos_hat)
  f, lg = np.asarray(feats, np.float64), np.asarray(logits, np.float64)
  for b in range(3):
    for m in range(2):
      w = _softmax(lg[b, :, m])  # Over the N positions of sample b only.
      np.testing.assert_allclose(weights[b, :, m], w, rtol=1e-5)
      np.testing.assert_allclose(protos[b, m], w @ f[b], rtol=1e-5, atol=1e-6)
    ph = np.stack([_l2n(v) for v in np.asarray(protos_hat[b], np.float64)])
    for n in range(5):
      rel = _softmax(ph @ f[b, n])  # cos(x_n, p^_m): both unit norm.
      np.testing.assert_allclose(beta[b, n], rel, rtol=1e-5)
      np.testing.assert_allclose(retrieved[b, n], _l2n(rel @ ph), rtol=1e-5, atol=1e-6)


def test_prototype_usage_matches_numpy():
  beta = jax.random.normal(jax.random.PRNGKey(6), (2, 4, 5, 3))  # [B, H, W, M]
  nearest = np.argmax(np.asarray(beta).reshape(-1, 3), axis=-1)
  freq = np.bincount(nearest, minlength=3) / nearest.size
  freq = freq[freq > 0]
  np.testing.assert_allclose(dpu.prototype_usage(beta), np.exp(-np.sum(freq * np.log(freq))), rtol=1e-5)
  one_hot = jax.nn.one_hot(jnp.zeros((2, 7), jnp.int32), 4)  # Every position picks prototype 0.
  np.testing.assert_allclose(dpu.prototype_usage(one_hot), 1.0, rtol=1e-6)


def test_attention_init_std_sets_the_kernel_scale_and_spreads_initial_prototypes():
  """Default init: near-uniform normalcy maps, so the M prototypes start almost equal (L_d ~ gamma)."""
  x = jnp.maximum(jnp.asarray(np.random.default_rng(7).normal(size=(1, 16, 16, 32)), jnp.float32), 0)  # Post-ReLU.
  results = {}
  for std in (None, 3.0):
    unit = dpu.DPU(num_prototypes=10, attention_init_std=std)
    variables = unit.init(jax.random.PRNGKey(0), x)
    _, aux = unit.apply(variables, x)
    kernel = np.asarray(variables["params"]["attention"]["kernel"])
    results[std] = (np.std(kernel), float(dpu.diversity_error(aux["prototypes"])[0]))
  np.testing.assert_allclose(results[None][0], 1 / np.sqrt(32), rtol=0.25)
  np.testing.assert_allclose(results[3.0][0], 3.0, rtol=0.25)
  assert results[None][1] > 0.99  # Collapsed from the start: the hinge's gradient vanishes there.
  assert results[3.0][1] < 0.6
