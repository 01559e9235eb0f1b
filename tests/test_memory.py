"""PGM memory (Eq. 8-17, 22, 25-29) against plain NumPy loops; the module's two training mechanisms."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad.evaluate import scoring
from jaxvad.models import memory


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _data(seed=0, b=2, k=6, n=5, c=4):
  rng = np.random.default_rng(seed)
  return _unit(rng.normal(size=(b, k, c))), _unit(rng.normal(size=(n, c)))


def _softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def test_read_matches_numpy():
  z, m = _data()
  raw = z * 3.0  # Queries are normalised inside (Eq. 8 is a cosine).
  z_hat, w, d = memory.read(jnp.asarray(raw), jnp.asarray(m))
  for b in range(z.shape[0]):
    for i in range(z.shape[1]):
      d_ref = np.array([z[b, i] @ m[j] for j in range(m.shape[0])])
      w_ref = _softmax(d_ref)
      np.testing.assert_allclose(d[b, i], d_ref, atol=1e-5)
      np.testing.assert_allclose(w[b, i], w_ref, atol=1e-5)
      np.testing.assert_allclose(z_hat[b, i], sum(w_ref[j] * m[j] for j in range(m.shape[0])), atol=1e-5)


def test_update_matches_numpy_over_all_queries():
  z, m = _data(1)
  q = z.reshape(-1, z.shape[-1])  # All B * K queries of the batch.
  new = np.asarray(memory.update(jnp.asarray(q), jnp.asarray(m)))
  for j in range(m.shape[0]):
    v = _softmax(np.array([q[i] @ m[j] for i in range(q.shape[0])]))  # Eq. 11: over queries.
    ref = m[j] + sum(v[i] * q[i] for i in range(q.shape[0]))
    np.testing.assert_allclose(new[j], ref / np.linalg.norm(ref), atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(new, axis=-1), 1.0, atol=1e-5)


def test_update_nearest_scope_matches_numpy():
  """MNAD's rule: only the queries whose nearest item is m_j, weights v_ij / max_i v_ij."""
  z, m = _data(6, k=9)
  q = z.reshape(-1, z.shape[-1])
  new = np.asarray(memory.update(jnp.asarray(q), jnp.asarray(m), scope="nearest"))
  assign = [int(np.argmax([qi @ mj for mj in m])) for qi in q]
  for j in range(m.shape[0]):
    v = _softmax(np.array([q[i] @ m[j] for i in range(q.shape[0])]))
    ref = m[j] + sum(v[i] / v.max() * q[i] for i in range(q.shape[0]) if assign[i] == j)
    np.testing.assert_allclose(new[j], ref / np.linalg.norm(ref), atol=1e-5)


def _scatter_ref(z, m):
  """Per sample: Tr(S_B), Tr(S_W), L_dis with K = queries of the sample (Eq. 13-17)."""
  out = []
  for zb in z:
    k = zb.shape[0]
    assign = [int(np.argmax([zi @ mj for mj in m])) for zi in zb]
    counts = [assign.count(j) for j in range(m.shape[0])]
    mean = m.mean(axis=0)
    tr_sb = sum(counts[j] / k * np.sum((m[j] - mean) ** 2) for j in range(m.shape[0]))
    tr_sw = sum(counts[j] / k * sum(np.sum((zb[i] - m[j]) ** 2) for i in range(k) if assign[i] == j)
                for j in range(m.shape[0]))
    out.append((tr_sb, tr_sw, tr_sw / tr_sb, np.mean([np.linalg.norm(zb[i] - m[assign[i]]) for i in range(k)])))
  return np.array(out)


def test_scatter_traces_and_discriminative_loss_match_numpy():
  z, m = _data(2, b=3, k=7, n=4)
  _, _, d = memory.read(jnp.asarray(z), jnp.asarray(m))
  assign = memory.nearest(d)
  tr_sb, tr_sw = memory.scatter_traces(jnp.asarray(z), jnp.asarray(m), assign)
  ref = _scatter_ref(z, m)
  np.testing.assert_allclose(tr_sb, ref[:, 0], rtol=1e-5)
  np.testing.assert_allclose(tr_sw, ref[:, 1], rtol=1e-5)
  np.testing.assert_allclose(memory.discriminative_loss(jnp.asarray(z), jnp.asarray(m), assign), ref[:, 2],
                             rtol=1e-5)
  np.testing.assert_allclose(memory.nearest_distance(jnp.asarray(z), jnp.asarray(m), assign), ref[:, 3],
                             rtol=1e-5)


def test_discriminative_loss_guarded_when_items_coincide():
  z, m = _data(3)
  same = np.repeat(m[:1], m.shape[0], axis=0)  # Tr(S_B) = 0.
  assign = jnp.zeros(z.shape[:2], jnp.int32)
  assert np.all(np.isfinite(memory.discriminative_loss(jnp.asarray(z), jnp.asarray(same), assign)))


def test_distances_match_numpy():
  z, m = _data(4)
  q = z.reshape(-1, z.shape[-1])
  out = memory.distances(m, q)
  mean = m.mean(axis=0)
  d_m = [m[j] @ mean / np.linalg.norm(m[j]) / np.linalg.norm(mean) for j in range(m.shape[0])]
  d_q = [max(q[i] @ m[j] for j in range(m.shape[0])) for i in range(q.shape[0])]
  np.testing.assert_allclose(out["D_m"], np.sum(d_m), rtol=1e-5)  # Eq. 26 is a sum.
  np.testing.assert_allclose(out["D_m_mean"], np.mean(d_m), rtol=1e-5)
  np.testing.assert_allclose(out["D_q"], np.mean(d_q), rtol=1e-5)


def test_regularity_score_is_eq25():
  """evaluate_scores with {"psnr": 0.6, "memory_distance": 0.4} gives S = 0.6 P + 0.4 (1 - D) per video."""
  rng = np.random.default_rng(5)
  lengths = [6, 9]
  psnr = [rng.uniform(20, 40, n) for n in lengths]
  dist = [rng.uniform(0.1, 1.5, n) for n in lengths]
  vs = scoring.VideoScores(
      dataset="toy", t=4, names=["a", "b"], scenes=["s", "s"], num_frames=[n + 4 for n in lengths],
      frame_index=[np.arange(4, n + 4) for n in lengths], scores={"psnr": psnr, "memory_distance": dist},
      labels=[(np.arange(n) % 3 == 0).astype(np.int8) for n in lengths])
  res = scoring.evaluate_scores(vs, score_weights={"psnr": 0.6, "memory_distance": 0.4})
  for v in range(2):
    p = (psnr[v] - psnr[v].min()) / (psnr[v].max() - psnr[v].min())
    dd = (dist[v] - dist[v].min()) / (dist[v].max() - dist[v].min())
    s = 0.6 * p + 0.4 * (1 - dd)
    np.testing.assert_allclose(res["frame_scores"]["normality"][v], s, atol=1e-12)
    np.testing.assert_allclose(res["frame_scores"]["anomaly"][v], 1 - s, atol=1e-12)


# The module.

RNG = jax.random.key(0, impl="unsafe_rbg")


def _module_and_vars(**kw):
  mod = memory.Memory(num_items=5, **kw)
  z = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 3, 4))  # [B, h, w, C]
  return mod, mod.init(RNG, z), z


def test_memory_not_updated_at_evaluation_and_updated_in_training():
  mod, variables, z = _module_and_vars()
  (_, _), mut = mod.apply(variables, z, train=False, mutable=["memory"])
  jax.tree.map(np.testing.assert_array_equal, mut["memory"], variables["memory"])
  out = mod.apply(variables, z, train=False)  # No mutable collection: plain output.
  assert isinstance(out, tuple) and out[0].shape == z.shape
  (_, aux), mut = mod.apply(variables, z, train=True, mutable=["memory"])
  assert not np.allclose(mut["memory"]["items"], variables["memory"]["items"])
  np.testing.assert_allclose(np.linalg.norm(mut["memory"]["items"], axis=-1), 1.0, atol=1e-5)
  # The rule acted on the items read this step (Eq. 12), over all B * K queries.
  np.testing.assert_allclose(mut["memory"]["items"], memory.update(aux["queries"].reshape(-1, 4), aux["items"]),
                             atol=1e-6)


def test_rule_update_switch_off():
  mod, variables, z = _module_and_vars(rule_update=False)
  _, mut = mod.apply(variables, z, train=True, mutable=["memory"])
  jax.tree.map(np.testing.assert_array_equal, mut["memory"], variables["memory"])


def test_items_unit_norm_at_init():
  _, variables, _ = _module_and_vars()
  np.testing.assert_allclose(np.linalg.norm(variables["memory"]["items"], axis=-1), 1.0, atol=1e-5)


def test_gradient_reaches_items_only_with_grad_items():
  for grad_items in (True, False):
    mod, variables, z = _module_and_vars(grad_items=grad_items)
    assert ("params" in variables) == grad_items

    def loss(params, z):
      (_, aux), _ = mod.apply({**variables, "params": params}, z, train=True, mutable=["memory"])
      return jnp.mean(memory.discriminative_loss(aux["queries"], aux["items"], aux["nearest"]))

    if grad_items:
      g = jax.grad(loss)(variables["params"], z)
      assert float(jnp.abs(g["shift"]).sum()) > 0
    else:  # No parameter; items are constants for the gradient (z still gets one).
      gz = jax.grad(lambda z: loss({}, z))(z)
      assert float(jnp.abs(gz).sum()) > 0


def test_both_mechanisms_compose():
  """The optimiser's step on `shift` moves the items once; the rule then acts on the moved items."""
  mod, variables, z = _module_and_vars()
  (_, aux0), mut = mod.apply(variables, z, train=True, mutable=["memory"])
  np.testing.assert_array_equal(mut["memory"]["anchor"], variables["params"]["shift"])
  step = 0.05 * jax.random.normal(jax.random.PRNGKey(2), variables["params"]["shift"].shape)
  params = {"shift": variables["params"]["shift"] + step}  # What the optimiser would do.
  (_, aux1), _ = mod.apply({"params": params, **mut}, z, train=True, mutable=["memory"])
  np.testing.assert_allclose(aux1["items"], memory.l2_normalize(mut["memory"]["items"] + step), atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(aux1["items"], axis=-1), 1.0, atol=1e-5)
