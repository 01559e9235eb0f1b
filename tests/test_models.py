"""Backbone and baseline: shapes, paper parameter counts, upsampling, skips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.models import backbone, baseline


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_paper_config_parameter_counts():
  """Full width with 3x3 transposed convs equals the reference network (SPEC 2, MPN Table 3)."""
  model = baseline.FramePredictor(width=1.0, upsample="conv_transpose")
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 256, 256, 3)))
  params = shapes["params"]
  assert _count(params["encoder"]) == 4_690_560
  assert _count(params["decoder"]) == 8_480_960
  assert _count(params["head"]) == 112_451
  assert _count(params) == 13_283_971  # MPN's 13,285,251 minus the DPU's 1,280.


@pytest.mark.parametrize("upsample", ["conv_transpose", "subpixel"])
def test_prediction_shape_and_range(upsample):
  model = baseline.FramePredictor(width=0.0625, upsample=upsample)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 32, 32, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.PRNGKey(0), x)
  pred, aux = model.apply(variables, x)
  assert pred.shape == (2, 32, 32, 3)
  assert float(jnp.max(jnp.abs(pred))) <= 1.0
  assert aux["z"].shape == (2, 4, 4, backbone.scaled(512, 0.0625))
  assert aux["features"].shape == (2, 32, 32, 2 * backbone.scaled(64, 0.0625))


def test_depth_to_space_matches_numpy_reference():
  x = np.arange(2 * 3 * 5 * 12, dtype=np.float32).reshape(2, 3, 5, 12)
  out = np.asarray(backbone.depth_to_space(jnp.asarray(x), 2))
  ref = np.zeros((2, 6, 10, 3), np.float32)
  for b in range(2):
    for i in range(3):
      for j in range(5):
        for di in range(2):
          for dj in range(2):
            ref[b, 2 * i + di, 2 * j + dj] = x[b, i, j, (di * 2 + dj) * 3:(di * 2 + dj + 1) * 3]
  np.testing.assert_array_equal(out, ref)


def test_stack_frames_order():
  frames = jnp.arange(4)[None, :, None, None, None] * jnp.ones((1, 4, 2, 2, 3))  # Frame k filled with k.
  stacked = backbone.stack_frames(frames)
  np.testing.assert_array_equal(np.asarray(stacked[0, 0, 0]), np.repeat(np.arange(4.0), 3))


def test_decoder_without_skips_ignores_them():
  dec = backbone.Decoder(width=0.0625, use_skips=False)
  z = jnp.ones((1, 2, 2, backbone.scaled(512, 0.0625)))
  skips = tuple(jnp.ones((1, 16 // 2**i, 16 // 2**i, backbone.scaled(64 * 2**i, 0.0625))) for i in range(3))
  variables = dec.init(jax.random.PRNGKey(0), z, skips)
  out1 = dec.apply(variables, z, skips)
  out2 = dec.apply(variables, z, jax.tree.map(lambda s: s * 7.0 - 3.0, skips))
  np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))


def test_batch_norm_variant_has_state():
  model = baseline.FramePredictor(width=0.0625, norm="batch")
  x = jnp.ones((2, 4, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert "batch_stats" in variables
  (_, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert "batch_stats" in updates


def test_bad_options_raise():
  x = jnp.ones((1, 4, 16, 16, 3))
  with pytest.raises(ValueError, match="upsampling"):
    baseline.FramePredictor(width=0.0625, upsample="nearest").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="normalisation"):
    baseline.FramePredictor(width=0.0625, norm="layer").init(jax.random.PRNGKey(0), x)
