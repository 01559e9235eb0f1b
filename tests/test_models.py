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


def _conv3x3(x, kernel, bias):
  """SAME 3x3 cross-correlation in NumPy: x [B, H, W, Ci], kernel [3, 3, Ci, Co] -> [B, H, W, Co]."""
  h, w = x.shape[1:3]
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for di in range(3):
    for dj in range(3):
      out += xp[:, di:di + h, dj:dj + w] @ kernel[di, dj]
  return out + bias


def numpy_output_head(params, x):
  """The prediction head of both references: conv-ReLU, conv-ReLU, conv, tanh (SPEC 2, SPEC 4)."""
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
  x = np.maximum(_conv3x3(np.asarray(x, np.float64), p["Conv_0"]["kernel"], p["Conv_0"]["bias"]), 0.0)
  x = np.maximum(_conv3x3(x, p["Conv_1"]["kernel"], p["Conv_1"]["bias"]), 0.0)
  return np.tanh(_conv3x3(x, p["Conv_2"]["kernel"], p["Conv_2"]["bias"]))


@pytest.mark.parametrize("upsample", ["conv_transpose", "subpixel"])
def test_prediction_is_the_head_of_the_decoder_features(upsample):
  """pred = tanh head (NumPy) of the decoder's [B, H, W, 128w] features; the last kernel is scaled up so
  that the tanh saturates and a missing or different squashing shows."""
  model = baseline.FramePredictor(width=0.0625, upsample=upsample)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 32, 32, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.PRNGKey(0), x)
  head = variables["params"]["head"]
  head = {**head, "Conv_2": {**head["Conv_2"], "kernel": 30.0 * head["Conv_2"]["kernel"]}}
  variables = {"params": {**variables["params"], "head": head}}
  pred, aux = model.apply(variables, x)
  assert pred.shape == (2, 32, 32, 3)
  assert aux["z"].shape == (2, 4, 4, backbone.scaled(512, 0.0625))
  assert aux["features"].shape == (2, 32, 32, 2 * backbone.scaled(64, 0.0625))
  ref = numpy_output_head(head, aux["features"])
  assert np.max(np.abs(ref)) > 0.9  # The saturated regime is exercised.
  np.testing.assert_allclose(pred, ref, atol=1e-4)


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
