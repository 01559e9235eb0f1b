"""Tests of the synthetic multi-scene benchmark (SPEC 1.4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxvad.data import synthetic
from jaxvad.data.synthetic import ANOMALY_KINDS, make_benchmark, make_scenes, render_video

FRAMES = 40  # short videos keep every test well under a second


@pytest.fixture(scope="module")
def bench32():
  return make_benchmark(num_scenes=8, size=32, train_videos_per_scene=1, test_videos_per_scene=1,
                        frames_per_video=FRAMES, seed=0)


def test_same_seed_same_arrays_and_different_seed_differs():
  scene = make_scenes(8, seed=0)[2]
  a = render_video(scene, name="03_001", num_frames=FRAMES, size=32, seed=5, anomaly="speed")
  b = render_video(scene, name="03_001", num_frames=FRAMES, size=32, seed=5, anomaly="speed")
  c = render_video(scene, name="03_001", num_frames=FRAMES, size=32, seed=6, anomaly="speed")
  np.testing.assert_array_equal(a.frames, b.frames)
  np.testing.assert_array_equal(a.masks, b.masks)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert not np.array_equal(a.frames, c.frames)
  assert make_scenes(8, seed=0) == make_scenes(8, seed=0)
  assert make_scenes(8, seed=0) != make_scenes(8, seed=1)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_dtypes(size):
  scene = make_scenes()[0]
  v = render_video(scene, name="01_001", num_frames=FRAMES, size=size, seed=0, anomaly="appearance")
  assert v.frames.shape == (FRAMES, size, size, 3) and v.frames.dtype == np.uint8
  assert v.labels.shape == (FRAMES,) and v.labels.dtype == np.int8
  assert v.masks.shape == (FRAMES, size, size) and v.masks.dtype == np.uint8
  assert set(np.unique(v.masks)) <= {0, 255}
  assert v.scene == "01" and v.name == "01_001"
  n = render_video(scene, name="01_002", num_frames=FRAMES, size=size, seed=0)
  assert n.labels is None and n.masks is None


def test_scenes_differ_in_what_is_normal():
  scenes = make_scenes(8, seed=0)
  assert len(scenes) >= 8 and len({s.scene_id for s in scenes}) == len(scenes)
  speeds = [s.speed for s in scenes]
  sizes = [s.object_size for s in scenes]
  assert len(set(speeds)) == len(scenes) and len(set(sizes)) >= 6
  assert max(speeds) >= 3 * min(speeds)  # one scene's normal is another's speed anomaly
  assert max(sizes) >= 2 * min(sizes)
  angles = sorted({round(s.walkway_angle / 45) % 4 for s in scenes})
  assert len(angles) >= 3  # walkways in at least three different directions
  assert len({s.shape for s in scenes}) >= 3
  assert len(make_scenes(12, seed=0)) == 12


def test_test_split_labels_and_masks(bench32):
  test = bench32["testing"]
  kinds = {e.kind for v in test.videos for e in v.anomalies}
  assert kinds == set(ANOMALY_KINDS)
  for v in test.videos:
    nonempty = v.masks.reshape(v.num_frames, -1).any(axis=1)
    np.testing.assert_array_equal(v.labels, nonempty.astype(np.int8))
    assert 0 < v.labels.sum() < v.num_frames, v.name  # both classes in every test video
    assert v.labels[:4].sum() == 0  # the first t frames (no prediction) are normal
    for e in v.anomalies:
      assert v.labels[e.first:e.last + 1].all()
      assert 0.2 <= (e.last - e.first + 1) / v.num_frames <= 0.65


def test_training_split_is_normal_and_named(bench32):
  train, test = bench32["training"], bench32["testing"]
  assert train.dataset == "synthetic" and train.split == "training" and test.split == "testing"
  assert [v.name for v in train.videos] == [f"{s:02d}_001" for s in range(1, 9)]
  assert train.scenes == [f"{s:02d}" for s in range(1, 9)]
  for v in train.videos:
    assert v.labels is None and v.masks is None and v.anomalies == ()


def test_few_test_videos_still_cover_every_kind():
  splits = make_benchmark(num_scenes=1, size=32, train_videos_per_scene=1, test_videos_per_scene=2,
                          frames_per_video=FRAMES)
  kinds = [e.kind for v in splits["testing"].videos for e in v.anomalies]
  assert sorted(kinds) == sorted(ANOMALY_KINDS)


def test_anomaly_only_adds_the_anomalous_object():
  scene = make_scenes()[4]
  a = render_video(scene, name="x", num_frames=FRAMES, size=32, seed=3)
  b = render_video(scene, name="x", num_frames=FRAMES, size=32, seed=3, anomaly="direction")
  changed = np.abs(a.frames.astype(int) - b.frames.astype(int)).max(axis=-1) > 0
  assert not changed[b.labels == 0].any()
  assert changed[b.masks > 0].mean() > 0.9


def test_speed_anomaly_moves_faster_than_normal_objects():
  """Mean |frame difference| inside the anomaly mask exceeds that on normal objects (slow scene 01)."""
  scene = make_scenes()[0]
  normal = render_video(scene, name="n", num_frames=80, size=64, seed=1).frames.astype(np.float32)
  bg = np.median(normal, axis=0)
  obj = np.abs(normal - bg).max(axis=-1) > 40  # normal object pixels
  diff = np.abs(np.diff(normal, axis=0)).mean(axis=-1)
  normal_motion = diff[obj[1:]].mean()
  v = render_video(scene, name="s", num_frames=80, size=64, seed=1, anomaly="speed")
  fast = np.abs(np.diff(v.frames.astype(np.float32), axis=0)).mean(axis=-1)
  speed_motion = fast[v.masks[1:] > 0].mean()
  assert speed_motion > 1.5 * normal_motion, (speed_motion, normal_motion)


def test_write_benchmark_layout(tmp_path):
  splits = make_benchmark(num_scenes=2, size=32, train_videos_per_scene=1, test_videos_per_scene=1,
                          frames_per_video=12)
  root = synthetic.write_benchmark(splits, tmp_path / "synthetic", progress=False)
  for key in ("training", "testing"):
    for v in splits[key].videos:
      files = sorted((root / key / "frames" / v.name).iterdir())
      assert [f.name for f in files] == [f"{i:03d}.png" for i in range(v.num_frames)]
      np.testing.assert_array_equal(np.asarray(Image.open(files[5])), v.frames[5])
  labels = np.load(root / "frame_labels.npy", allow_pickle=False)
  assert labels.shape == (1, splits["testing"].num_frames) and labels.dtype == np.int8
  np.testing.assert_array_equal(labels[0], splits["testing"].labels)
  v = splits["testing"].videos[0]
  t = int(np.argmax(v.labels))
  mask = np.asarray(Image.open(root / "testing" / "gt_masks" / v.name / f"{t:03d}.png"))
  np.testing.assert_array_equal(mask, v.masks[t])
  meta = json.loads((root / "scenes.json").read_text())
  assert set(meta["scenes"]) == {"01", "02"}
  events = meta["videos"][f"testing/{v.name}"]["anomalies"]
  assert events and events[0]["kind"] == v.anomalies[0].kind and events[0]["first"] == v.anomalies[0].first
  assert not any(p.name.startswith(".") for p in root.rglob("*"))  # no temp leftovers


def test_describe_mentions_scenes_and_kinds(bench32):
  text = synthetic.describe(bench32)
  for kind in ANOMALY_KINDS:
    assert kind in text
  assert "01" in text and "testing" in text and "abnormal" in text


def test_bad_arguments_raise():
  scene = make_scenes()[0]
  with pytest.raises(ValueError, match="unknown anomaly kind"):
    render_video(scene, name="x", num_frames=10, size=32, anomaly="teleport")
  with pytest.raises(ValueError, match="size"):
    render_video(scene, name="x", num_frames=10, size=8)
