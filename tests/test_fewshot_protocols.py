"""Support protocols, the abnormal-support report, the rows' initialisations and the early checks (item 4, 3, 7)."""

import numpy as np
import pytest

from jaxvad import config_lib
from jaxvad.data.types import Split, VideoData
from jaxvad.errors import ConfigError, DataError
from jaxvad.meta import checks, fewshot, finetune_select
from jaxvad.meta import protocol
from jaxvad.meta import train as meta_train_lib
from jaxvad.train import loop
from tests import test_fewshot as tf

T = 4


def _video(name, frames, scene="cam", labels=None):
  return VideoData(name=name, scene=scene, frames=np.asarray(frames, np.uint8), labels=labels)


def _const_video(name, n, value, scene="cam", labels=None):
  return _video(name, np.full((n, 2, 2, 3), value), scene, labels)


class RecordingAdapter:
  """Stands in for `fewshot.Adapter`: records every support set and theta, predicts a constant frame."""

  def __init__(self):
    self.calls = []

  def adapt(self, method, theta, alpha, support):
    self.calls.append((method, theta, np.array(support)))
    return theta

  def predict_fn(self, theta):
    return lambda w: {"pred": np.zeros_like(w[:, -1]) + 0.1 * theta}


def test_abnormal_support_report_on_known_anomalies():
  lab0 = np.zeros(20, np.int8)
  lab0[0] = 1  # Anomaly at frame 0: in window 0 only.
  lab6 = np.zeros(20, np.int8)
  lab6[6] = 1  # Frame 6 is in windows s = 2 .. 6 (window s = frames s .. s+4).
  split = Split("toy", "testing", [_const_video("a", 20, 0, labels=lab0), _const_video("b", 20, 0, labels=lab6),
                                   _const_video("c", 20, 0, labels=np.zeros(20, np.int8))])
  rep = fewshot.abnormal_support(split, t=T, shots=(0, 1, 5, 10))
  assert rep == {"a": {0: 0, 1: 1, 5: 1, 10: 1}, "b": {0: 0, 1: 0, 5: 3, 10: 5}, "c": {0: 0, 1: 0, 5: 0, 10: 0}}
  assert fewshot.abnormal_support(Split("toy", "testing", [_const_video("u", 20, 0)]), t=T, shots=(1,)) is None


def _target():
  rng = np.random.default_rng(0)
  test = [_const_video(f"t{i}", 20, 255, labels=(rng.random(20) < 0.3).astype(np.int8)) for i in range(2)]
  for v in test:
    v.labels[10], v.labels[11] = 1, 0  # Both classes among the scored frames.
  # Training frame f of video j is uniformly 10 * j + f: each window is identified by its values.
  train = [_video(f"r{j}", np.broadcast_to(10 * j + np.arange(9)[:, None, None, None], (9, 2, 2, 3)))
           for j in range(3)]
  return Split("toy", "testing", test), Split("toy", "training", train)


def test_train_random_support_reads_only_training_frames_and_is_seeded():
  test, train = _target()
  train_windows = {tuple(np.round((v.frames[s:s + T + 1, 0, 0, 0]).astype(float), 3))
                   for v in train.videos for s in range(v.num_frames - T)}
  adapter = RecordingAdapter()
  table = fewshot.fewshot_table(adapter, 1.0, None, test, t=T, shots=(0, 1, 3), methods=("finetune",),
                                progress=False, support="train_random", train_split=train, seed=7)
  assert table["support"] == "train_random" and table["abnormal_support"] is None
  supports = [s for _, _, s in adapter.calls if len(s)]  # K = 0 calls carry no shots.
  assert [len(s) for s in supports] == [1, 1, 3, 3]  # K = 1 and K = 3 for each of the 2 test videos.
  for s in supports:
    for w in s:
      values = tuple(np.round((w[:, 0, 0, 0] + 1) * 127.5).astype(float))
      assert values in train_windows  # Every shot is a training window (test frames are all 255).
  np.testing.assert_array_equal(supports[0], supports[2][:1])  # Nested in K.
  again = fewshot.train_support_windows(train, "cam", t=T, k=3, seed=7)
  np.testing.assert_array_equal(again, supports[2])
  other = [fewshot.train_support_windows(train, "cam", t=T, k=3, seed=s) for s in range(8, 12)]
  assert any(not np.array_equal(o, again) for o in other)


def test_rows_start_from_their_own_initialisations():
  test, _ = _target()
  adapter = RecordingAdapter()
  table = fewshot.fewshot_table(adapter, 1.0, "alpha", test, t=T, shots=(0, 2), progress=False,
                                methods=("meta", "finetune", "pretrained"), inits={"pretrained": (3.0, None)})
  assert sorted({(m, th) for m, th, _ in adapter.calls}) == [("finetune", 1.0), ("meta", 1.0), ("pretrained", 3.0)]
  # K = 0: meta and finetune share the meta init, the pre-trained row has its own un-adapted model.
  assert table["results"]["meta"][0] is table["results"]["finetune"][0]
  assert table["results"]["pretrained"][0] is not table["results"]["meta"][0]
  rows = fewshot.table_rows(table, "x")
  assert [r["method"] for r in rows] == ["Meta", "Finetune from meta init", "Pre-trained"]
  with pytest.raises(ValueError, match="pretrained"):
    fewshot.fewshot_table(adapter, 1.0, None, test, t=T, shots=(0, 1), methods=("pretrained",), progress=False)


def test_unadapted_column_scored_once_for_every_support_protocol():
  test, train = _target()
  adapter = RecordingAdapter()
  unadapted = {}
  first = fewshot.fewshot_table(adapter, 1.0, "alpha", test, t=T, shots=(0, 2), progress=False, methods=("meta",),
                                unadapted=unadapted)
  n_first = len(adapter.calls)
  second = fewshot.fewshot_table(adapter, 1.0, "alpha", test, t=T, shots=(0, 2), progress=False, methods=("meta",),
                                 support="train_random", train_split=train, unadapted=unadapted)
  k0_calls = [s for _, _, s in adapter.calls[n_first:] if not len(s)]
  assert k0_calls == [] and len(adapter.calls) - n_first == len(test.videos)  # Only the K = 2 column was scored.
  assert second["results"]["meta"][0] is first["results"]["meta"][0]
  fresh = fewshot.fewshot_table(RecordingAdapter(), 1.0, "alpha", test, t=T, shots=(0, 2), progress=False,
                                methods=("meta",), support="train_random", train_split=train)
  assert fresh["auc"]["meta"][0] == second["auc"]["meta"][0]


def test_check_functions():
  with pytest.raises(ConfigError, match=r"meta.episodes=6 .* 4 device.*meta.episodes=8"):
    checks.check_episodes_vs_devices(6, 4)
  checks.check_episodes_vs_devices(8, 4)
  test, train = _target()
  with pytest.raises(DataError, match="target video t0 .* 20 frames.*needs t \\+ max\\(K\\) \\+ 1 = 21"):
    checks.check_target_videos(test, t=T, shots=(0, 16))
  with pytest.raises(DataError, match="camera cam .* 15 training windows.*K = 16"):
    checks.check_target_videos(Split("toy", "testing", [_const_video("t", 40, 0)]), t=T, shots=(0, 16),
                               supports=("train_random",), target_train=train)
  with pytest.raises(ConfigError, match="unknown protocol"):
    checks.check_target_videos(test, t=T, shots=(0, 1), supports=("first",))
  src = Split("src", "training", [_const_video("s0", 30, 0, scene="a"), _const_video("s1", 9, 0, scene="b")])
  with pytest.raises(DataError, match="scene b"):
    checks.check_source_scenes(src, t=T, k_support=1, n_query=1)


TINY = [*tf.TINY, "train.num_steps=1", "meta.num_steps=1"]  # The few-shot tests' tiny setup, shorter runs.


@pytest.mark.parametrize("override, device_count, error, match", [
    ("fewshot.shots=(0,1,30)", 1, DataError, "video 03_"),
    ("meta.k_support=6", 1, DataError, "scene 0[12] of"),
    ("meta.episodes=2", 4, ConfigError, "meta.episodes=2"),
    ("fewshot.support=('train_random','x')", 1, ConfigError, "unknown protocol"),
    ("train.batch_size=200", 1, DataError, "train.batch_size=200"),
    ("meta.shots=(1,6)", 1, DataError, "K = 6"),
])
def test_early_checks_fire_before_any_training_step(tmp_path, monkeypatch, override, device_count, error, match):
  def no_training(*args, **kwargs):
    raise AssertionError("a training step ran before the checks")

  monkeypatch.setattr(loop, "train", no_training)
  monkeypatch.setattr(meta_train_lib, "meta_train", no_training)
  monkeypatch.setattr(checks, "device_count", lambda config: device_count)
  config = config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY + [override])
  with pytest.raises(error, match=match):
    protocol.run(config, tmp_path / "w", progress=False)
  assert not (tmp_path / "w" / "pretrain").exists()


def test_holdout_tail_keeps_head_for_training_and_tail_for_selection():
  from jaxvad.data import multisource
  video = _video("v", np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3)))
  split = multisource.MultiSplit("a+b", "training", [video], scene_weights={"cam": 1.0}, source_names=("a", "b"))
  head, tail = finetune_select.holdout_tail(split, 0.3)
  np.testing.assert_array_equal(head.videos[0].frames[:, 0, 0, 0], np.arange(7))
  np.testing.assert_array_equal(tail.videos[0].frames[:, 0, 0, 0], [7, 8, 9])
  assert head.scene_weights == {"cam": 1.0} and isinstance(tail, multisource.MultiSplit)
  with pytest.raises(ConfigError, match="val_fraction=1.0"):
    finetune_select.holdout_tail(split, 1.0)


def test_selection_picks_the_step_size_with_the_lowest_heldout_query_loss():
  # Toy row: theta = {"w"}; loss = mean((x - w)^2). One step of size lr from w = 0 gives w = 2 lr mean(x): lr = 0.5
  # lands exactly on a scene's level, so it wins; from an init already at the level, no adaptation wins.
  import jax.numpy as jnp
  task_loss = lambda theta, frozen, windows: jnp.mean(jnp.square(windows - theta["w"]))
  level = 191  # Frames of value 191 are 0.498 in [-1, 1].
  split = Split("src", "training-heldout", [_const_video("a", 40, level, scene="s")])
  sampler = finetune_select.validation_sampler(split, t=T, k_support=1, n_query=1, seed=0)
  x = level / 127.5 - 1
  out = finetune_select.select(task_loss, {"far": {"w": jnp.zeros(())}, "there": {"w": jnp.asarray(x)}}, None,
                               sampler, lrs=(0.1, 0.5, 2.0), steps=(1,), num_episodes=2)
  assert (out["far"]["lr"], out["far"]["steps"]) == (0.5, 1) and out["far"]["loss"] < 1e-10
  assert out["there"]["lr"] == 0.0 and len(out["far"]["grid"]) == 4
  with pytest.raises(ConfigError, match="no held-out source tail"):
    finetune_select.validation_sampler(split, t=T, k_support=10, n_query=1, seed=0)


def test_protocol_with_selection_pretrains_on_the_heads_only(tmp_path, monkeypatch):
  seen = {}

  def record(config, workdir, split, progress=True):
    seen["frames"] = [v.num_frames for v in split.videos]
    raise KeyboardInterrupt  # Stop here: only the data handed to pre-training matters.

  monkeypatch.setattr(meta_train_lib, "pretrain", record)
  config = config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY)
  config.fewshot.select = dict(val_fraction=0.2, lrs=(1e-2,), steps=(1,), episodes=2)
  with pytest.raises(KeyboardInterrupt):
    protocol.run(config, tmp_path / "w", progress=False)
  assert seen["frames"] == [24, 24]  # 30 frames per source video, the last 6 held out.


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["real_ped2", "mixed_ped2"])
def test_real_configs_load_and_pass_the_checks(tmp_path, monkeypatch, variant):
  from conftest import SHARED_DATA
  if not (SHARED_DATA / "realscenes" / "training").is_dir() or not (SHARED_DATA / "ped2" / "testing").is_dir():
    pytest.skip(f"realscenes or ped2 not found under {SHARED_DATA}")
  monkeypatch.setenv("JAXVAD_DATA", str(SHARED_DATA))
  monkeypatch.setenv("JAXVAD_CACHE", str(tmp_path / "cache"))
  seen = {}

  def record(config, workdir, split, progress=True):
    seen["scenes"] = split.scenes
    raise KeyboardInterrupt  # The checks passed; stop before pre-training.

  monkeypatch.setattr(meta_train_lib, "pretrain", record)
  config = config_lib.load_config(f"configs/meta.py:{variant}")
  with pytest.raises(KeyboardInterrupt):
    protocol.run(config, tmp_path / "w", progress=False)
  real = ["realscenes/avenue", "realscenes/pets09"]
  assert seen["scenes"] == (real if variant == "real_ped2" else real + [f"synthetic/0{i}" for i in range(1, 9)])


@pytest.mark.slow
def test_all_rows_both_protocols_with_selection_end_to_end(tmp_path):
  import json
  config = config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY + [
      "meta.log_every=1", "meta.checkpoint_every=1", "fewshot.batch_size=8"])
  config.fewshot.methods = ("meta", "meta_fo", "finetune", "pretrained")
  config.fewshot.support = ("test_first", "train_random")
  config.fewshot.select = dict(val_fraction=0.4, lrs=(1e-2, 1e-1), steps=(1, 2), episodes=2)
  config.meta.k_support, config.meta.n_query = 1, 1  # Held-out tails of 12 frames hold one episode of 2 x 5.
  config.fewshot.reference = True
  config.meta.shots, config.meta.num_steps = (1, 2), 3  # K drawn per meta-batch.
  table = protocol.run(config, tmp_path / "w", progress=False)
  saved = json.loads((tmp_path / "w" / "fewshot" / "fewshot.json").read_text())
  assert saved["support"] == "test_first" and set(saved["by_support"]) == {"train_random"}
  for tab in (saved, saved["by_support"]["train_random"]):
    assert set(tab["auc"]) == {"meta", "meta_fo", "finetune", "pretrained"}
    assert tab["num_frames_scored"] == saved["num_frames_scored"]  # Both protocols score the same frames.
  assert set(saved["finetune_selection"]) == {"finetune", "pretrained"}
  assert saved["finetune"]["pretrained"]["lr"] == saved["finetune_selection"]["pretrained"]["lr"]
  assert (tmp_path / "w" / "first_order" / "meta" / "metrics.jsonl").exists()
  assert len(saved["abnormal_support"]) == 1 and set(next(iter(saved["abnormal_support"].values()))) == {"0", "1", "3"}
  text = (tmp_path / "w" / "fewshot" / "table.md").read_text()
  assert "Pre-trained" in text and "Finetune from meta init" in text and "train_random" in text
  assert "In-domain reference" in text and 0 <= saved["reference"]["auc"] <= 1
  assert saved["reference"]["num_frames_scored"] == saved["num_frames_scored"]
  assert (tmp_path / "w" / "reference" / "checkpoints").is_dir()
  assert table["shots"] == [0, 1, 3]
