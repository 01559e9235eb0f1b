"""Tests for jaxvad.data.windows: indexing, scaling, step-deterministic shuffling and prefetching."""

from __future__ import annotations

import numpy as np
import pytest

from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData
from jaxvad.data.windows import WindowSource, scale_frames

T = 2


def make_split(lengths=(7, 5, 9), scenes=("b", "a", "b"), hw=4, seed=0) -> Split:
  rng = np.random.default_rng(seed)
  videos = [VideoData(name=f"{i:02d}", scene=s, frames=rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8))
            for i, (n, s) in enumerate(zip(lengths, scenes))]
  return Split("toy", "training", videos)


def test_window_indexing():
  split = make_split()
  src = WindowSource(split, t=T)
  assert len(src) == sum(n - T for n in (7, 5, 9))
  assert src.scene_names == ["a", "b"]
  assert src.video_index.dtype == src.start.dtype == src.scene_ids.dtype == np.int32
  for i in range(len(src)):
    v = split.videos[src.video_index[i]]
    s = src.start[i]
    assert 0 <= s and s + T < v.num_frames  # all t+1 frames in one video
    np.testing.assert_array_equal(src.window(i), v.frames[s:s + T + 1])
    np.testing.assert_array_equal(src.window(i)[-1], v.frames[s + T])  # target = last frame
    assert src.scene_names[src.scene_ids[i]] == v.scene
  # every (video, start) pair once
  pairs = {(int(a), int(b)) for a, b in zip(src.video_index, src.start)}
  assert len(pairs) == len(src)


def test_stride():
  src = WindowSource(make_split(), t=T, stride=2)
  assert len(src) == sum(len(range(0, n - T, 2)) for n in (7, 5, 9))
  assert set(src.start.tolist()) <= {0, 2, 4, 6}


def test_get_batch_and_exact_scaling():
  split = make_split()
  src = WindowSource(split, t=T)
  idx = [5, 0, 11, 5]
  b = src.get_batch(idx)
  assert b["frames"].shape == (4, T + 1, 4, 4, 3) and b["frames"].dtype == np.float32
  ref = np.stack([src.window(i) for i in idx]).astype(np.float32) / np.float32(127.5) - np.float32(1)
  np.testing.assert_array_equal(b["frames"], ref)
  np.testing.assert_array_equal(b["video"], src.video_index[idx])
  np.testing.assert_array_equal(b["start"], src.start[idx])
  np.testing.assert_array_equal(b["scene"], src.scene_ids[idx])
  assert b["scene"].dtype == b["video"].dtype == b["start"].dtype == np.int32
  x = scale_frames(np.array([0, 255, 127, 128], np.uint8))
  np.testing.assert_array_equal(x[:2], [-1.0, 1.0])  # the ends are exact
  all_values = scale_frames(np.arange(256, dtype=np.uint8))
  np.testing.assert_array_equal(all_values, np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1))
  np.testing.assert_allclose(all_values, np.arange(256) / 127.5 - 1, rtol=0, atol=1e-7)  # float32 rounding only
  assert np.all(np.diff(all_values) > 0) and all_values.min() == -1 and all_values.max() == 1


def test_memmap_frames(tmp_path):
  split = make_split()
  for v in split.videos:
    np.save(tmp_path / f"{v.name}.npy", v.frames)
  mm = Split("toy", "training", [VideoData(v.name, v.scene, np.load(tmp_path / f"{v.name}.npy", mmap_mode="r"))
                                 for v in split.videos])
  a = WindowSource(split, t=T).batch_at(1, 4, seed=3)
  b = WindowSource(mm, t=T).batch_at(1, 4, seed=3)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_batch_at_deterministic_and_seeds_differ():
  src = WindowSource(make_split(), t=T)
  a = src.batch_at(3, 4, seed=1)
  b = WindowSource(make_split(), t=T).batch_at(3, 4, seed=1)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  orders = [np.concatenate([src.batch_indices(s, 4, seed=sd) for s in range(src.steps_per_epoch(4))])
            for sd in (1, 2)]
  assert not np.array_equal(orders[0], orders[1])
  np.testing.assert_array_equal(src.batch_indices(0, 4, seed=1, shuffle=False), [0, 1, 2, 3])


def test_epoch_covers_every_window_once():
  src = WindowSource(make_split(), t=T)  # 15 windows
  bs = 4
  spe = src.steps_per_epoch(bs)
  assert spe == len(src) // bs
  for epoch in range(2):
    idx = np.concatenate([src.batch_indices(epoch * spe + s, bs, seed=0) for s in range(spe)])
    assert len(set(idx.tolist())) == len(idx) == spe * bs  # no repeats, remainder dropped
  src1 = WindowSource(make_split(), t=T)
  idx = np.concatenate([src1.batch_indices(s, 1, seed=0) for s in range(len(src1))])
  np.testing.assert_array_equal(np.sort(idx), np.arange(len(src1)))
  # Epochs differ in order.
  assert not np.array_equal(src.batch_indices(0, bs, 0), src.batch_indices(spe, bs, 0))


def test_iterate_matches_batch_at_and_resume():
  src = WindowSource(make_split(), t=T)
  full = list(src.iterate(0, 8, 4, seed=7))
  assert [s for s, _ in full] == list(range(8))
  for step, batch in full:
    ref = src.batch_at(step, 4, seed=7)
    for k in ref:
      np.testing.assert_array_equal(batch[k], ref[k])
  resumed = list(src.iterate(5, 3, 4, seed=7, prefetch=1))
  sync = list(src.iterate(5, 3, 4, seed=7, prefetch=0))
  for (s1, b1), (s2, b2), (s3, b3) in zip(full[5:], resumed, sync):
    assert s1 == s2 == s3
    np.testing.assert_array_equal(b1["frames"], b2["frames"])
    np.testing.assert_array_equal(b1["frames"], b3["frames"])


def test_iterate_close_stops_thread():
  src = WindowSource(make_split(), t=T)
  gen = src.iterate(0, None, 2, seed=0, prefetch=2)
  assert next(gen)[0] == 0
  assert next(gen)[0] == 1
  gen.close()  # must not hang: the thread is joined in the generator's finally


def test_prefetch_propagates_exception(monkeypatch):
  src = WindowSource(make_split(), t=T)
  orig = src.get_batch
  calls = []

  def flaky(indices):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError("disk on fire")
    return orig(indices)

  monkeypatch.setattr(src, "get_batch", flaky)
  got = []
  with pytest.raises(RuntimeError, match="disk on fire"):
    for step, _ in src.iterate(0, 10, 2, seed=0, prefetch=2):
      got.append(step)
  assert got == [0, 1]


def test_short_video_error():
  split = make_split(lengths=(7, 2, 9))
  with pytest.raises(DataError, match=r"video 01 of toy/training has 2 frames, shorter than a window of t\+1 = 3"):
    WindowSource(split, t=T)


def test_batch_larger_than_windows_error():
  src = WindowSource(make_split(), t=T)
  with pytest.raises(DataError, match=r"batch size 16 .* 15 windows of toy/training"):
    src.batch_at(0, 16, seed=0)
  with pytest.raises(DataError):
    next(src.iterate(0, 1, 16, seed=0))


def test_mismatched_frame_shapes_error():
  split = make_split()
  split.videos[1].frames = split.videos[1].frames[:, :3]
  with pytest.raises(DataError, match="video 01"):
    WindowSource(split, t=T)
