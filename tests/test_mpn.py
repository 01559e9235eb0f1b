"""MPN model: paper parameter counts, plug points, ablation, losses and score against NumPy, training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxvad import config_lib
from jaxvad.models import backbone, baseline, mpn
from jaxvad.models import dpu as dpu_lib

WIDTH = 0.0625
CONFIG = ml_collections.ConfigDict(dict(lambda1=0.5, lambda2=0.1, gamma=1.0))


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def _init(model, x, seed=0):
  """Parameters with flax's shapes and LeCun-normal scale, drawn by NumPy.

  Far faster than `model.init` on a loaded 2-core CPU (flax's jitted initialisers
  compile for many seconds); the tests need only the structure and a sane scale.
  """
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  rng = np.random.default_rng(seed)

  def fill(s):
    if len(s.shape) == 1:  # Biases.
      return jnp.zeros(s.shape, s.dtype)
    return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])), s.dtype)

  return jax.tree.map(fill, shapes)


def _window(seed=0, size=16):
  return jax.random.uniform(jax.random.PRNGKey(seed), (2, 5, size, size, 3), minval=-1, maxval=1)


@pytest.fixture(scope="module")
def tiny():
  model = mpn.MPN(width=WIDTH, upsample="subpixel", num_prototypes=3)
  window = _window()
  variables = _init(model, window[:, :-1])
  pred, aux = model.apply(variables, window[:, :-1])
  return model, variables, window, pred, aux


@pytest.fixture(scope="module")
def train_step(tiny):
  """One jitted Adam step on the full MPN loss: (params, opt_state) -> (params, opt_state, loss, grads)."""
  model, _, window, _, _ = tiny
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state):
    def loss(p):
      pred, aux = model.apply({"params": p}, window[:, :-1])
      return mpn.loss_fn(pred, aux, window, CONFIG)[0]
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value, grads

  return step, tx


def test_paper_config_parameter_counts():
  """Width 1, 3x3 transposed convs, M = 10, DPU at 1/1: 13,285,251 (MPN Table 3: 12.7 M)."""
  model = mpn.MPN(width=1.0, upsample="conv_transpose", num_prototypes=10, plug=1)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 256, 256, 3)))["params"]
  assert _count(params["dpu"]) == 1_280
  assert _count(params["encoder"]) == 4_690_560
  assert _count(params["decoder"]) == 8_480_960
  assert _count(params["head"]) == 112_451
  assert _count(params) == 13_285_251


@pytest.mark.parametrize("plug,channels", [(2, 128), (4, 256), (8, 512)])
def test_plug_points_shapes(plug, channels):
  """The DPU reads the decoder stage at 1/plug resolution; the frame comes out full size."""
  model = mpn.MPN(width=WIDTH, upsample="subpixel", num_prototypes=3, plug=plug)
  x = _window(size=32)[:, :-1]
  (pred, aux), variables = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x))
  c = backbone.scaled(channels, WIDTH)
  assert pred.shape == (2, 32, 32, 3)
  assert aux["features"].shape == (2, 32 // plug, 32 // plug, c)
  assert aux["prototypes"].shape == (2, 3, c)
  assert variables["params"]["dpu"]["attention"]["kernel"].shape == (1, 1, c, 3)


def test_plug_one_reads_decoder_output(tiny):
  _, _, _, pred, aux = tiny
  assert pred.shape == (2, 16, 16, 3)
  feats = np.asarray(aux["decoder_features"])
  ref = feats / np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-6)
  np.testing.assert_allclose(aux["features"], ref, atol=1e-5)
  assert aux["normalcy_maps"].shape == (2, 16, 16, 3)


# Decoder blocks in order (`backbone.Decoder`): ConvBlock_0 at 1/8 (512w channels), ConvBlock_1 at 1/4
# (256w), ConvBlock_2 at 1/2 (128w). Table 5's plug point p puts the DPU on the block at 1/p.
PLUG_BLOCKS = {8: ("ConvBlock_0", 512), 4: ("ConvBlock_1", 256), 2: ("ConvBlock_2", 128)}


@pytest.mark.parametrize("plug", [2, 4, 8])
def test_plug_point_feeds_f_plus_retrieved_into_the_rest_of_the_decoder(plug):
  """A plugged MPN = the plain AE with, after the named decoder block, x <- x + DPU's x~ (the DPU applied
  separately with the same parameters); F + F~ goes through the remaining layers (paper Sec. 3.1)."""
  x = _window(size=16)[:, :-1]
  plugged = mpn.MPN(width=WIDTH, upsample="subpixel", num_prototypes=3, plug=plug)
  plain = mpn.MPN(width=WIDTH, upsample="subpixel", use_dpu=False)
  variables = _init(plugged, x)
  block, channels = PLUG_BLOCKS[plug]
  dpu_params = {"params": variables["params"]["dpu"]}
  seen = {}

  def insert_dpu(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.name == block and context.module.parent.name == "decoder":
      seen["shape"] = out.shape
      out, _ = dpu_lib.DPU(num_prototypes=3).apply(dpu_params, out)  # F + F~
    return out

  with nn.intercept_methods(insert_dpu):
    ref = plain.apply({"params": {k: v for k, v in variables["params"].items() if k != "dpu"}}, x)[0]
  pred, aux = plugged.apply(variables, x)
  assert seen["shape"] == (2, 16 // plug, 16 // plug, backbone.scaled(channels, WIDTH))
  assert aux["features"].shape == seen["shape"]
  np.testing.assert_allclose(pred, ref, atol=1e-5)


def test_without_dpu_is_the_baseline():
  x = jnp.zeros((1, 4, 16, 16, 3))
  ae = jax.eval_shape(mpn.MPN(width=WIDTH, use_dpu=False).init, jax.random.PRNGKey(0), x)
  base = jax.eval_shape(baseline.FramePredictor(width=WIDTH).init, jax.random.PRNGKey(0), x)
  assert jax.tree.structure(ae) == jax.tree.structure(base)
  assert jax.tree.map(lambda a: a.shape, ae) == jax.tree.map(lambda a: a.shape, base)
  assert _count(ae) == _count(base)


def test_loss_and_score_match_numpy(tiny):
  _, _, window, pred, aux = tiny
  loss, metrics = mpn.loss_fn(pred, aux, window, CONFIG)
  scores = mpn.score_fn(pred, aux, window, CONFIG)
  l_fra = np.mean((np.asarray(pred) - np.asarray(window[:, -1])) ** 2)
  l_c, l_d = np.zeros(2), np.zeros(2)
  for b in range(2):
    feats = np.asarray(aux["features"][b]).reshape(-1, aux["features"].shape[-1])
    beta = np.asarray(aux["retrieval"][b]).reshape(-1, 3)
    protos = np.asarray(aux["prototypes"][b])
    for n in range(feats.shape[0]):
      l_c[b] += np.sum((feats[n] - protos[np.argmax(beta[n])]) ** 2) / feats.shape[0]
    for i in range(3):
      for j in range(i + 1, 3):
        l_d[b] += max(0.0, CONFIG.gamma - np.sum((protos[i] - protos[j]) ** 2)) * 2 / (3 * 2)
  np.testing.assert_allclose(scores["feature_error"], l_c, rtol=1e-5)
  np.testing.assert_allclose(metrics["l_c"], l_c.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["l_d"], l_d.mean(), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["l_fra"], l_fra, rtol=1e-5)
  np.testing.assert_allclose(loss, l_fra + 0.5 * (l_c.mean() + 0.1 * l_d.mean()), rtol=1e-5)


def test_compactness_mean_divides_by_channels(tiny):
  _, _, window, pred, aux = tiny
  _, summed = mpn.loss_fn(pred, aux, window, CONFIG)
  mean_config = ml_collections.ConfigDict({**CONFIG.to_dict(), "compactness": "mean"})
  _, averaged = mpn.loss_fn(pred, aux, window, mean_config)
  np.testing.assert_allclose(averaged["l_c"], summed["l_c"] / aux["features"].shape[-1], rtol=1e-6)
  fixed_config = ml_collections.ConfigDict({**mean_config.to_dict(), "compactness_channels": 128})
  _, fixed = mpn.loss_fn(pred, aux, window, fixed_config)
  np.testing.assert_allclose(fixed["l_c"], summed["l_c"] / 128, rtol=1e-6)
  with pytest.raises(ValueError, match="compactness"):
    mpn.loss_fn(pred, aux, window, ml_collections.ConfigDict({**CONFIG.to_dict(), "compactness": "max"}))


@pytest.mark.parametrize("variant,channels", [("ped2_cpu", 128), ("ped2", 128), ("quick", 128),
                                              ("ped2_plug2", 128), ("ped2_plug4", 256), ("ped2_plug8", 512)])
def test_configs_weigh_compactness_like_the_reference_at_the_paper_width(tiny, variant, channels):
  """One rule: L_c = the paper's channel sum / the DPU's channel count at width 1.0 (the reference's mean)."""
  _, _, window, pred, aux = tiny
  config = config_lib.load_config(f"configs/mpn.py:{variant}").model
  _, summed = mpn.loss_fn(pred, aux, window, ml_collections.ConfigDict({**CONFIG.to_dict(), "compactness": "sum"}))
  _, weighted = mpn.loss_fn(pred, aux, window, config)
  np.testing.assert_allclose(weighted["l_c"], summed["l_c"] / channels, rtol=1e-6)


def test_without_dpu_loss_is_frame_loss_and_no_feature_score():
  model = mpn.MPN(width=WIDTH, upsample="subpixel", use_dpu=False)
  window = _window()
  pred, aux = model.apply(_init(model, window[:, :-1]), window[:, :-1])
  loss, metrics = mpn.loss_fn(pred, aux, window, CONFIG)
  assert set(metrics) == {"l_fra"} and float(loss) == float(metrics["l_fra"])
  assert mpn.score_fn(pred, aux, window, CONFIG) == {}


def test_loss_gradient_reaches_dpu_attention(tiny, train_step):
  _, variables, _, _, _ = tiny
  step, tx = train_step
  *_, grads = step(variables["params"], tx.init(variables["params"]))
  kernel_grad = np.asarray(grads["dpu"]["attention"]["kernel"])
  assert np.all(np.isfinite(kernel_grad)) and np.any(kernel_grad != 0)


def test_short_training_decreases_loss(tiny, train_step):
  _, variables, _, _, _ = tiny
  step, tx = train_step
  params = variables["params"]
  opt_state = tx.init(params)
  losses = []
  for _ in range(15):
    params, opt_state, value, _ = step(params, opt_state)
    losses.append(float(value))
  assert losses[-1] < 0.9 * losses[0]


def test_invalid_plug_raises():
  with pytest.raises(ValueError, match="plug"):
    mpn.MPN(width=WIDTH, plug=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 16, 16, 3)))


def test_without_dpu_set_on_a_dpu_config_trains_and_evaluates(tmp_path):
  """Table 1's "w/o DPU" figures: ``--set model.use_dpu=False`` on an MPN config runs end to end; the
  feature score the model cannot produce is left out of eval.score_weights (and recorded)."""
  import json  # pylint: disable=import-outside-toplevel
  from jaxvad import cli  # pylint: disable=import-outside-toplevel
  tiny = ["data.size=[32,32]", "data.synthetic.num_scenes=2", "data.synthetic.frames_per_video=16",
          "data.synthetic.train_videos_per_scene=1", "data.synthetic.test_videos_per_scene=1",
          "model.width=0.0625", "train.num_steps=2", "train.batch_size=2", "eval.batch_size=8",
          "eval.plots=False", f"data.cache_dir={tmp_path / 'cache'}", "model.use_dpu=False"]
  args = ["run", "--config", "configs/mpn.py:quick", "--workdir", str(tmp_path / "run"), "--no-progress"]
  for item in tiny:
    args += ["--set", item]
  assert cli.main(args) == 0
  results = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
  assert results["score_weights"] == {"psnr": 1.0}
  assert results["score_weights_absent"] == ["feature_error"]
  assert 0.0 <= results["auc"] <= 1.0


def test_scores_a_model_without_dpu_with_the_terms_it_has():
  """FP & FR weights on a DPU-less model's scores: PSNR alone (recorded); FR alone: a one-line ConfigError."""
  from jaxvad.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from jaxvad.evaluate import scoring  # pylint: disable=import-outside-toplevel
  psnr = [np.array([30.0, 20.0, 31.0, 29.0])]
  vs = scoring.VideoScores(dataset="d", t=4, names=["v"], scenes=["s"], num_frames=[8],
                           frame_index=[np.arange(4, 8)], scores={"psnr": psnr},
                           labels=[np.array([0, 1, 0, 0], np.int8)])
  res = scoring.evaluate_scores(vs, score_weights={"psnr": 1.0, "feature_error": 1.0})
  assert res["score_weights"] == {"psnr": 1.0} and res["score_weights_absent"] == ["feature_error"]
  assert res["auc"] == 1.0  # The low-PSNR frame is the abnormal one.
  with pytest.raises(ConfigError, match="eval.score_weights"):
    scoring.evaluate_scores(vs, score_weights={"feature_error": 1.0})


def test_health_fn_flags_collapsed_prototypes():
  """Against the paper-width probe (docs/mpn.md): reference init l_d 0.998 warns, std 3 (0.092) does not."""
  config = ml_collections.ConfigDict(dict(num_prototypes=10, gamma=1.0, attention_init_std=None))
  warnings = mpn.health_fn({"l_d": 0.998, "protos_used": 2.6}, config)
  assert len(warnings) == 1 and "collapse" in warnings[0] and "attention_init_std=None" in warnings[0]
  assert mpn.health_fn({"l_d": 0.092, "protos_used": 7.0}, config) == []
  assert mpn.health_fn({"l_fra": 0.01}, config) == []  # No DPU: nothing to check.
  one = ml_collections.ConfigDict(dict(num_prototypes=1, gamma=1.0))
  assert mpn.health_fn({"l_d": 1.0}, one) == []  # M = 1: L_d is 0 by definition, nothing to separate.
  from jaxvad import models  # pylint: disable=import-outside-toplevel
  assert models.build(config_lib.load_config("configs/mpn.py:quick").model).health_fn is mpn.health_fn
