"""Tests of jaxvad.evaluate.scoring with a fake model of known output."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from jaxvad.data.types import Split
from jaxvad.data.types import VideoData
from jaxvad.errors import ConfigError, NonFiniteError, UserError
from jaxvad.evaluate import scoring

T = 2
H = W = 4


def _error(v: int) -> float:
  """Known prediction error e (in [0, 1] units) of the frame whose pixel value is v."""
  return 0.002 * (1 + (v * 7) % 11)


def _split(lengths, with_masks=True) -> Split:
  """Video i, frame k: every pixel = 10 i + k (so a fake model can tell where it is)."""
  videos = []
  for i, n in enumerate(lengths):
    frames = np.zeros((n, H, W, 3), np.uint8) + (10 * i + np.arange(n, dtype=np.uint8))[:, None, None, None]
    labels = np.array([(k * 3 + i) % 4 == 0 for k in range(n)], np.int8)
    masks = np.zeros((n, H, W), np.uint8)
    masks[labels == 1, 1:3, 1:3] = 1
    videos.append(VideoData(f"v{i}", "s0", frames, labels, masks if with_masks else None))
  return Split("fake", "testing", videos)


class FakeModel:
  """Reads only the LAST INPUT frame, predicts target + 2 e (e = `_error` of the target)."""

  def __init__(self):
    self.batch_shapes = []

  def __call__(self, windows):
    self.batch_shapes.append(windows.shape)
    v_in = np.rint((windows[:, T - 1, 0, 0, 0] + 1.0) * 127.5).astype(int)
    v_target = v_in + 1
    e = np.array([_error(v) for v in v_target])
    target = np.asarray(v_target / 127.5 - 1.0, np.float32)
    pred = np.broadcast_to((target + 2 * e)[:, None, None, None], windows[:, 0].shape)
    return {"pred": pred.astype(np.float32), "feature_error": e * 10.0}


def test_score_split_drops_first_t_and_pads_last_batch():
  lengths = [5, 3, 2, 6]  # Windows: 3 + 1 + 0 + 4 = 8 -> with B = 3: 3 calls, last padded by 1.
  model = FakeModel()
  vs = scoring.score_split(_split(lengths), model, t=T, batch_size=3, keep_error_maps=True, progress=False)
  assert model.batch_shapes == [(3, T + 1, H, W, 3)] * 3  # Fixed shape: one compilation.
  assert vs.t == T and vs.num_frames == lengths
  assert [list(i) for i in vs.frame_index] == [[2, 3, 4], [2], [], [2, 3, 4, 5]]
  assert vs.num_dropped == 2 * 3 + 2 and vs.num_scored == 8 and "t=2" in vs.dropped_note
  split = _split(lengths)
  for i, v in enumerate(split.videos):
    np.testing.assert_array_equal(vs.labels[i], v.labels[T:])
    np.testing.assert_array_equal(vs.masks[i], v.masks[T:])
    e = np.array([_error(10 * i + k) for k in range(T, v.num_frames)])
    np.testing.assert_allclose(vs.scores["psnr"][i], -20 * np.log10(e), rtol=1e-4)
    np.testing.assert_allclose(vs.scores["feature_error"][i], 10 * e)
    assert vs.error_maps[i].dtype == np.float16 and vs.error_maps[i].shape == (len(e), H, W)
    np.testing.assert_allclose(vs.error_maps[i], np.broadcast_to((e ** 2)[:, None, None], (len(e), H, W)),
                               rtol=2e-3)


def _auc_by_pairs(scores, labels):
  pos = [s for s, y in zip(scores, labels) if y == 1]
  neg = [s for s, y in zip(scores, labels) if y == 0]
  return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def _hand_anomaly(values, high_is_normal):
  """Per-video min-max by loops, inverted to an anomaly score."""
  out = []
  for v in values:
    lo, hi = min(v), max(v)
    mm = [(x - lo) / (hi - lo) if hi > lo else 0.0 for x in v]
    out.append([1.0 - m if high_is_normal else m for m in mm])
  return out


def test_evaluate_scores_exact_auc_on_constructed_case():
  lengths = [9, 8, 7]
  vs = scoring.score_split(_split(lengths), FakeModel(), t=T, batch_size=4, keep_error_maps=True,
                           progress=False)
  e = [[_error(10 * i + k) for k in range(T, n)] for i, n in enumerate(lengths)]
  labels = [list(vs.labels[i]) for i in range(len(lengths))]
  res = scoring.evaluate_scores(vs, smooth=True)
  anomaly = _hand_anomaly([[-20 * math.log10(x) for x in ev] for ev in e], high_is_normal=True)
  flat_a = [a for v in anomaly for a in v]
  flat_y = [y for v in labels for y in v]
  assert res["auc"] == pytest.approx(_auc_by_pairs(flat_a, flat_y))
  per = [_auc_by_pairs(a, y) for a, y in zip(anomaly, labels) if 0 < sum(y) < len(y)]
  assert res["per_video_auc"] == pytest.approx(np.mean(per))
  assert res["per_video_auc_num_used"] + res["per_video_auc_num_skipped"] == 3
  for i in range(3):
    np.testing.assert_allclose(res["frame_scores"]["anomaly"][i], anomaly[i], atol=1e-4)  # float32 preds.
  assert "auc_smoothed" in res and res["smoothing"]["taps"] == 15
  assert res["num_frames_dropped"] == 3 * T and res["num_frames_scored"] == sum(lengths) - 3 * T
  assert 0.0 <= res["pixel_auc"] <= 1.0

  # Two scores, PGM-style: gamma P + (1 - gamma)(1 - D); feature_error = 10 e is an anomaly score.
  res2 = scoring.evaluate_scores(vs, score_weights={"psnr": 0.6, "feature_error": 0.4})
  a_f = _hand_anomaly([[10 * x for x in ev] for ev in e], high_is_normal=False)
  comb = [[0.6 * p + 0.4 * f for p, f in zip(ap, af)] for ap, af in zip(anomaly, a_f)]
  assert res2["auc"] == pytest.approx(_auc_by_pairs([c for v in comb for c in v], flat_y))
  assert res2["high_is_normal"] == {"psnr": True, "feature_error": False}
  assert "auc_smoothed" not in res2


def test_evaluate_without_labels_or_maps():
  split = _split([5, 4], with_masks=False)
  for v in split.videos:
    v.labels = None
  vs = scoring.score_split(split, FakeModel(), t=T, batch_size=8, progress=False)
  assert vs.labels is None and vs.masks is None and vs.error_maps is None
  res = scoring.evaluate_scores(vs)
  assert res["auc"] is None and res["pixel_auc"] is None


def test_predict_fn_contract_errors():
  split = _split([4])
  with pytest.raises(KeyError, match="pred"):
    scoring.score_split(split, lambda w: {"x": w[:, 0]}, t=T, batch_size=2, progress=False)
  with pytest.raises(ValueError, match="per-window scalar"):
    scoring.score_split(split, lambda w: {"pred": w[:, -1], "f": np.zeros((2, 3))}, t=T, batch_size=2,
                        progress=False)


def test_first_window_and_merge_match_one_pass():
  lengths = [7, 6]
  split = _split(lengths)
  whole = scoring.score_split(split, FakeModel(), t=T, batch_size=4, first_window=2, progress=False)
  assert [list(i) for i in whole.frame_index] == [[4, 5, 6], [4, 5]]
  assert whole.num_dropped == 2 * (T + 2) and "2 few-shot windows" in whole.dropped_note
  np.testing.assert_array_equal(whole.labels[0], split.videos[0].labels[T + 2:])
  # Per-video scoring (as a per-video adapted model would do) merged = one pass.
  parts = [scoring.score_split(type(split)("fake", "testing", [v]), FakeModel(), t=T, batch_size=4,
                               first_window=2, progress=False) for v in split.videos]
  merged = scoring.merge_video_scores(parts)
  assert merged.names == whole.names and merged.num_scored == whole.num_scored
  for k in ("psnr", "feature_error"):
    for a, b in zip(merged.scores[k], whole.scores[k]):
      np.testing.assert_array_equal(a, b)
  assert scoring.evaluate_scores(merged)["auc"] == scoring.evaluate_scores(whole)["auc"]


def test_one_class_labels_give_auc_none_with_a_note_and_scores_are_written(tmp_path, caplog):
  from jaxvad.evaluate import report  # pylint: disable=import-outside-toplevel
  for value in (0, 1):
    split = _split([6, 5])
    for v in split.videos:
      v.labels = np.full(v.num_frames, value, np.int8)
    vs = scoring.score_split(split, FakeModel(), t=T, batch_size=4, keep_error_maps=True, progress=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jaxvad.evaluate.scoring"):
      res = scoring.evaluate_scores(vs, smooth=True)
    assert res["auc"] is None and res["auc_smoothed"] is None and res["per_video_auc"] is None
    assert f"only [{value}]" in res["auc_note"] and "undefined" in res["auc_note"]
    assert res["auc_note"] in caplog.text
    out = tmp_path / f"eval{value}"
    paths = report.save_scores(out, vs, res)
    loaded = report.load_scores(out)
    np.testing.assert_allclose(loaded["scores"]["anomaly"][1], res["frame_scores"]["anomaly"][1])
    assert [lab.tolist() for lab in loaded["labels"]] == [[value] * 4, [value] * 3]
    assert len(paths["csv"].read_text().splitlines()) == 1 + 4 + 3
    assert loaded["results"]["auc"] is None and "undefined" in loaded["results"]["auc_note"]


def test_nan_scores_are_one_line_nonfinite_error_naming_the_video():
  def nan_in_second_video(windows):
    out = FakeModel()(windows)
    v_in = np.rint((windows[:, T - 1, 0, 0, 0] + 1.0) * 127.5).astype(int)
    out["pred"] = np.where((v_in >= 10)[:, None, None, None], np.nan, out["pred"]).astype(np.float32)
    return out

  vs = scoring.score_split(_split([5, 6]), nan_in_second_video, t=T, batch_size=4, progress=False)
  with pytest.raises(NonFiniteError, match=r"psnr scores of video v1 are non-finite \(4 of 4 frames") as info:
    scoring.evaluate_scores(vs)
  assert isinstance(info.value, UserError) and "\n" not in str(info.value)
  assert "parameters (checkpoint) are non-finite" in str(info.value)


def test_pixel_auc_dropped_for_a_video_without_masks_is_said(caplog):
  split = _split([6, 5, 5])
  split.videos[1].masks = None
  vs = scoring.score_split(split, FakeModel(), t=T, batch_size=4, keep_error_maps=True, progress=False)
  with caplog.at_level(logging.WARNING, logger="jaxvad.evaluate.scoring"):
    res = scoring.evaluate_scores(vs)
  assert res["pixel_auc"] is None and res["auc"] is not None
  assert "1 of 3 test videos have no pixel masks (v1)" in res["pixel_auc_note"]
  assert res["pixel_auc_note"] in caplog.text
  full = scoring.evaluate_scores(scoring.score_split(_split([6, 5, 5]), FakeModel(), t=T, batch_size=4,
                                                     keep_error_maps=True, progress=False))
  assert full["pixel_auc"] is not None and full["pixel_auc_note"] is None


def test_unknown_score_name_is_a_config_error():
  vs = scoring.score_split(_split([5]), FakeModel(), t=T, batch_size=4, progress=False)
  with pytest.raises(ConfigError, match=r"eval.score_weights names score 'feature_eror'.*\['feature_error', 'psnr'\]"):
    scoring.evaluate_scores(vs, score_weights={"psnr": 1.0, "feature_eror": 1.0})


def _tiny_run(tmp_path, labels):
  """A 16x16 community data set, the baseline trained for 2 steps on it; returns (config, workdir)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxvad import config_lib, pipeline  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  root = tmp_path / "data"
  for split, n in (("training", 8), ("testing", 8)):
    d = root / split / "frames" / "01"
    d.mkdir(parents=True)
    for i in range(n):
      Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(d / f"{i:03d}.png")
  np.save(root / "labels.npy", np.asarray(labels, np.int64)[None])
  config = config_lib.apply_overrides(config_lib.load_config("configs/baseline.py:ped2_cpu"), [
      f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "data.labels=labels.npy", "data.masks_dir=",
      "data.size=[16,16]", "model.width=0.0625", "train.num_steps=2", "train.batch_size=2", "eval.batch_size=4",
      "train.log_every=1", "train.checkpoint_every=2"])
  pipeline.train(config, tmp_path / "run", progress=False)
  return config, tmp_path / "run"


@pytest.mark.slow  # Trains for 2 steps (~40 s of CPU); the fast tests above cover scoring itself.
def test_pipeline_one_class_labels_write_scores_and_nan_parameters_give_one_line(tmp_path, monkeypatch):
  from jaxvad import pipeline  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  config, workdir = _tiny_run(tmp_path, [0] * 8)
  res = pipeline.evaluate(config, workdir, progress=False)
  assert res["auc"] is None and "only [0]" in res["auc_note"]
  out = workdir / "eval"
  assert (out / "scores.npz").is_file() and len((out / "frames.csv").read_text().splitlines()) == 1 + 8 - config.data.t
  assert json.loads((out / "results.json").read_text())["auc"] is None

  restore = pipeline.restore_variables

  def nan_restore(*a, **kw):
    mdef, variables, step = restore(*a, **kw)
    return mdef, jax.tree.map(lambda x: x * np.nan, variables), step
  monkeypatch.setattr(pipeline, "restore_variables", nan_restore)
  with pytest.raises(NonFiniteError, match=r"psnr scores of video 01 are non-finite") as info:
    pipeline.evaluate(config, workdir, progress=False)
  assert "\n" not in str(info.value)
