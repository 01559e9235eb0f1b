"""Online adaptation of a live camera (`jaxvad.meta.online`, `jaxvad stream`), on a tiny 32x32 MPN."""

import json

import jax
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from jaxvad import cli, config_lib, models
from jaxvad.data import synthetic
from jaxvad.data.synthetic_scenes import make_scenes
from jaxvad.data.types import Split
from jaxvad.evaluate import metrics, scoring
from jaxvad.errors import ConfigError, DataError
from jaxvad.meta import core, fewshot, online, protocol

S = 32
TINY = ["data.size=[32,32]", "data.synthetic.num_scenes=1", "model.width=0.0625", "model.num_prototypes=3",
        "fewshot.batch_size=8"]
NOISE = (40, 41, 60)  # Frames replaced by noise in the invariant test.


def _config():
  return config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY)


@pytest.fixture(scope="module")
def setup():
  """(config, theta, alpha, frozen, scene): MPN pre-trained 150 Adam steps on one synthetic scene's normal video.

  Pre-trained so that scores mean something: with the random initialisation the labelled anomaly of
  `test_flags_the_known_anomaly_of_a_synthetic_video` is not flagged (flag rate ~3%).
  """
  config = _config()
  mdef = models.build(config.model)
  params = mdef.module.init(jax.random.PRNGKey(0), jax.numpy.zeros((1, 4, S, S, 3)))["params"]
  scene = make_scenes(1, 0)[0]
  train = synthetic.render_video(scene, name="train", num_frames=120, size=S, seed=1)
  th, fr = core.split_params(params, "all")
  loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  tx = optax.adam(3e-3)

  @jax.jit
  def step(th, st, w):
    g = jax.grad(loss)(th, fr, w)
    u, st = tx.update(g, st)
    return optax.apply_updates(th, u), st

  st, rng = tx.init(th), np.random.default_rng(0)
  for _ in range(150):
    idx = rng.integers(0, 120 - 4, 8)
    th, st = step(th, st, np.stack([train.frames[j:j + 5] for j in idx]).astype(np.float32) / 127.5 - 1)
  theta, frozen = core.split_params(core.merge_params(th, fr))
  return config, theta, core.init_alpha(theta, 1e-2), frozen, scene


def _normal_video(scene, n=90, seed=3):
  return synthetic.render_video(scene, name="normal", num_frames=n, size=S, seed=seed).frames


def _run(setup, frames, **kw):
  config, theta, alpha, frozen, _ = setup
  return online.run_stream(config, theta, alpha, frozen, frames, online.settings_from_config(config, **kw))


def test_config_section_and_its_checks():
  assert online.settings_from_config(_config()) == online.Settings(support=10, every=8, recent=4, max_drift=0.05)
  with pytest.raises(ConfigError, match="no such field"):
    online.settings_from_config(ml_collections.ConfigDict({"online": {"evry": 8}}))
  with pytest.raises(ConfigError, match="online.every"):
    online.settings_from_config(_config(), every=0)


def test_never_adapts_on_a_window_scored_abnormal(setup):
  frames = _normal_video(setup[4]).copy()
  noise = np.random.default_rng(0).integers(0, 256, (len(NOISE), S, S, 3), dtype=np.uint8)
  frames[list(NOISE)] = noise
  res = _run(setup, frames, support=5, every=1, recent=2, max_drift=10.0)
  by_frame = {r["frame"]: r for r in res["rows"]}
  abnormal = {f for f, r in by_frame.items() if not r["normal"]}
  assert set(NOISE) <= abnormal  # The test means something: noise windows were scored abnormal...
  assert res["num_updates"] > 20  # ... and steps ran all around them.
  used = set()
  for u in res["updates"]:
    assert u["windows"] and all(w <= u["frame"] for w in u["windows"])  # Only windows already scored.
    for w, sc in zip(u["windows"], u["scores"]):
      assert by_frame[w]["normal"] and sc == by_frame[w]["score"] and sc <= by_frame[w]["threshold"]
    used.update(u["windows"])
  assert not used & abnormal
  # Each window is the latest `recent` normal windows at that time (an independent recomputation).
  for u in res["updates"]:
    normal_before = [f for f in sorted(by_frame) if f <= u["frame"] and by_frame[f]["normal"]]
    assert u["windows"] == normal_before[-2:]


def test_flags_the_known_anomaly_of_a_synthetic_video(setup):
  video = synthetic.render_video(setup[4], name="test", num_frames=100, size=S, seed=2, anomaly=["appearance"])
  res = _run(setup, video.frames, support=5, every=4, recent=2)
  frames = np.asarray([r["frame"] for r in res["rows"]])
  labels = np.asarray(video.labels)[frames] > 0
  flagged = np.asarray([not r["normal"] for r in res["rows"]])
  scores = np.asarray([r["score"] for r in res["rows"]])
  assert labels.sum() >= 20 and (~labels).sum() >= 20
  assert flagged[labels].mean() >= 0.8, flagged[labels].mean()  # Random init: ~0.03.
  assert flagged[~labels].mean() <= 0.1
  assert scores[labels].mean() > scores[~labels].mean() + 1.0
  assert res["num_updates"] > 0 and all(not flagged[frames == w][0] for u in res["updates"] for w in u["windows"])


def test_drift_reset_returns_to_the_one_shot_parameters(setup):
  frames = _normal_video(setup[4])
  oneshot = _run(setup, frames, support=5, every=10**9)
  reset = _run(setup, frames, support=5, every=2, recent=2, max_drift=1e-9)
  free = _run(setup, frames, support=5, every=2, recent=2, max_drift=10.0, max_abnormal=0)
  assert oneshot["num_updates"] == 0 and reset["num_updates"] > 10
  assert all(u["reset"] and u["drift"] > 1e-9 for u in reset["updates"])
  assert all(r["drift"] == 0.0 for r in reset["rows"])
  # Every step undone at once: theta is always theta_K, so the scores are the one-shot scores.
  np.testing.assert_allclose([r["score"] for r in reset["rows"]], [r["score"] for r in oneshot["rows"]], rtol=1e-6)
  # Without the reset the steps change the scores, and the drift grows.
  assert free["num_resets"] == 0 and free["rows"][-1]["drift"] > free["updates"][0]["drift"] > 0
  assert not np.allclose([r["score"] for r in free["rows"]], [r["score"] for r in oneshot["rows"]])


def test_long_abnormal_run_pauses_adaptation_until_a_normal_run(setup):
  frames = _normal_video(setup[4]).copy()
  frames[40:50] = np.random.default_rng(1).integers(0, 256, (10, S, S, 3), dtype=np.uint8)
  res = _run(setup, frames, support=5, every=1, recent=3, max_abnormal=4, max_drift=10.0)
  rows = {r["frame"]: r for r in res["rows"]}
  paused = [f for f, r in rows.items() if r["paused"]]
  assert paused and min(paused) <= 45  # Paused inside the noise run ...
  assert not any(rows[f]["updated"] for f in paused)  # ... nothing adapts while paused ...
  resumed = max(paused) + 1  # The third window of a normal run ends the pause (its row is not paused).
  assert all(rows[f]["normal"] for f in range(resumed - 2, resumed + 1))  # ... until `recent` normal in a row.
  assert not all(rows[f]["normal"] for f in range(resumed - 3, resumed))
  assert any(u["frame"] >= resumed for u in res["updates"])


def test_no_online_step_equals_one_shot_adaptation(setup):
  config, theta, alpha, frozen, scene = setup
  video = synthetic.render_video(scene, name="test", num_frames=60, size=S, seed=2, anomaly=["appearance"])
  res = _run(setup, video.frames, support=5, every=10**9)
  adapter = protocol._adapter(config, frozen)  # pylint: disable=protected-access
  vs = fewshot.score_video_adapted(adapter, "meta", theta, alpha, Split("s", "testing", [video]), 0,
                                   t=config.data.t, k=5, first_window=5, batch_size=8)
  assert [r["frame"] for r in res["rows"]] == vs.frame_index[0].tolist()
  for name in ("psnr", "feature_error"):
    np.testing.assert_allclose([r["terms"][name] for r in res["rows"]], vs.scores[name][0], rtol=1e-5, atol=1e-6)
  # The online normalisation: K adaptation windows' min-max, combined as evaluate_scores combines terms.
  theta_k = adapter.adapt("meta", theta, alpha, np.stack(
      [video.frames[s:s + 5].astype(np.float32) / 127.5 - 1 for s in range(5)]))
  ref = scoring.score_split(Split("s", "testing", [video]), adapter.predict_fn(theta_k), t=4,
                                    batch_size=8, progress=False)
  lo = {n: ref.scores[n][0][:5].min() for n in ("psnr", "feature_error")}
  hi = {n: ref.scores[n][0][:5].max() for n in ("psnr", "feature_error")}
  p = (vs.scores["psnr"][0] - lo["psnr"]) / (hi["psnr"] - lo["psnr"])
  fe = (vs.scores["feature_error"][0] - lo["feature_error"]) / (hi["feature_error"] - lo["feature_error"])
  np.testing.assert_allclose([r["score"] for r in res["rows"]], 1 - (p + 1 - fe) / 2, rtol=1e-4, atol=1e-4)


def _fake_meta_workdir(path):
  for sub in ("pretrain/checkpoints/1", "meta/checkpoints/1"):
    (path / sub).mkdir(parents=True)
  return path


def _write_frames(folder, frames):
  folder.mkdir(parents=True)
  for i, f in enumerate(frames):
    Image.fromarray(f).save(folder / f"{i:03d}.png")
  return folder


def _stream_args(workdir, video, *extra):
  args = ["stream", "--config", "configs/meta.py:synthetic", "--workdir", str(workdir), "--video", str(video),
          "--no-progress", *extra]
  for item in TINY:
    args += ["--set", item]
  return args


def test_cli_errors(tmp_path, capsys, setup):
  video = _write_frames(tmp_path / "cam" / "v1", _normal_video(setup[4], n=12))
  assert cli.main(_stream_args(tmp_path / "w", tmp_path / "nope")) == 2
  assert "nope does not exist" in capsys.readouterr().err
  (tmp_path / "empty").mkdir()
  assert cli.main(_stream_args(tmp_path / "empty", video)) == 2
  assert "no pre-trained model" in capsys.readouterr().err
  workdir = _fake_meta_workdir(tmp_path / "fake")  # Passes the workdir check; the length check comes first.
  assert cli.main(_stream_args(workdir, video)) == 2
  err = capsys.readouterr().err
  assert "has 12 frames" in err and "needs at least 15" in err
  assert cli.main(_stream_args(workdir, video, "--set", "online.every=0")) == 2
  assert "online.every" in capsys.readouterr().err
  with pytest.raises(DataError, match="needs at least"):  # A stream (no length up front): checked at its end.
    list(online.stream(setup[0], *setup[1:4], iter(_normal_video(setup[4], n=12))))


def test_stream_video_writes_its_outputs(tmp_path, capsys, setup, monkeypatch):
  config, theta, alpha, frozen, scene = setup
  from jaxvad.meta import train as meta_train_lib
  monkeypatch.setattr(meta_train_lib, "load_meta", lambda c, w: (theta, alpha, frozen))
  video = _write_frames(tmp_path / "cam" / "v1", _normal_video(scene, n=40))
  workdir = _fake_meta_workdir(tmp_path / "w")
  assert cli.main(_stream_args(workdir, video, "--out", str(tmp_path / "out"), "--set", "online.support=5",
                               "--set", "online.every=4", "--set", "online.recent=2")) == 0
  assert "streamed 31 frames" in capsys.readouterr().out  # 40 - t - K.
  out = tmp_path / "out"
  lines = (out / "scores.csv").read_text().splitlines()
  assert lines[0].split(",")[:2] == ["frame", "psnr"] and len(lines) == 32 and lines[1].startswith("9,")
  summary = json.loads((out / "summary.json").read_text())
  updates = [json.loads(x) for x in (out / "updates.jsonl").read_text().splitlines()]
  assert summary["num_updates"] == len(updates) > 0 and summary["settings"]["every"] == 4
  assert (out / "scores.png").stat().st_size > 1000 and (out / "drift.png").stat().st_size > 1000


def test_recalibration_after_a_step_uses_the_k_windows_under_the_new_theta(setup):
  config, theta, alpha, frozen, scene = setup
  frames = _normal_video(scene, n=30)
  res = _run(setup, frames, support=5, every=10, recent=2, max_drift=10.0)
  fixed = _run(setup, frames, support=5, every=10, recent=2, max_drift=10.0, recalibrate=False)
  assert res["num_updates"] == 2 and not res["updates"][0]["reset"]
  assert len({r["threshold"] for r in fixed["rows"]}) == 1  # Fixed at theta_K.
  # An independent recomputation of the first step and of the threshold after it.
  mdef = models.build(config.model)
  adapter = protocol._adapter(config, frozen)  # pylint: disable=protected-access
  win = lambda s: frames[s:s + 5].astype(np.float32) / 127.5 - 1  # Window s: target frame s + 4.
  support = np.stack([win(s) for s in range(5)])
  theta_k = adapter.adapt("meta", theta, alpha, support)
  used = np.stack([win(f - 4) for f in res["updates"][0]["windows"]])
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  theta_1 = core.inner_update(task_loss, theta_k, alpha, frozen, used)
  out = adapter.predict_fn(theta_1)(support)
  terms = {"psnr": metrics.psnr(np.asarray(out["pred"]), support[:, -1]),
           "feature_error": np.asarray(out["feature_error"], np.float64)}
  p = (terms["psnr"] - terms["psnr"].min()) / np.ptp(terms["psnr"])
  fe = (terms["feature_error"] - terms["feature_error"].min()) / np.ptp(terms["feature_error"])
  expected = np.quantile(1 - (p + 1 - fe) / 2, 0.95)
  np.testing.assert_allclose(res["updates"][0]["threshold"], expected, rtol=1e-4)
  after = [r for r in res["rows"] if r["frame"] > res["updates"][0]["frame"]][0]
  assert after["threshold"] == res["updates"][0]["threshold"] != res["rows"][0]["threshold"]


def test_finetune_step_uses_the_fixed_step_size(setup):
  frames = _normal_video(setup[4], n=40)
  oneshot = _run(setup, frames, support=5, every=10**9)
  zero = _run(setup, frames, support=5, every=2, recent=2, step="finetune", lr=0.0, max_drift=10.0)
  some = _run(setup, frames, support=5, every=2, recent=2, step="finetune", lr=1e-2, max_drift=10.0)
  assert zero["num_updates"] > 5 and all(u["drift"] == 0.0 for u in zero["updates"])
  np.testing.assert_allclose([r["score"] for r in zero["rows"]], [r["score"] for r in oneshot["rows"]], rtol=1e-6)
  assert some["updates"][-1]["drift"] > 0


def test_cli_video_file_too_short_is_found_at_the_end_of_its_stream(tmp_path, capsys, setup, write_video,
                                                                   monkeypatch):
  config, theta, alpha, frozen, _ = setup
  from jaxvad.meta import train as meta_train_lib
  monkeypatch.setattr(meta_train_lib, "load_meta", lambda c, w: (theta, alpha, frozen))
  video = tmp_path / "cam.mp4"
  write_video(video, [100 + 5 * i for i in range(12)], size=32)  # A file: its length is known only at its end.
  assert cli.main(_stream_args(_fake_meta_workdir(tmp_path / "w"), video)) == 2
  assert "cam.mp4 has 12 frames" in capsys.readouterr().err
  write_video(tmp_path / "long.mp4", [100 + i for i in range(20)], size=32)
  assert cli.main(_stream_args(tmp_path / "w", tmp_path / "long.mp4", "--out", str(tmp_path / "o"),
                               "--set", "online.support=3")) == 0
  assert "streamed 13 frames" in capsys.readouterr().out  # 20 - t - K.
