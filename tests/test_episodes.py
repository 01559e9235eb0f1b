"""Tests for jaxvad.data.episodes: single-scene episodes with disjoint support/query sets."""

from __future__ import annotations

import numpy as np
import pytest

from jaxvad.data.episodes import EpisodeSampler, disjoint_starts, first_k_windows
from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData
from jaxvad.data.windows import scale_frames

T = 2


def make_split(lengths=(12, 10, 15, 9, 11), scenes=("s0", "s0", "s1", "s2", "s3"), hw=4) -> Split:
  rng = np.random.default_rng(0)
  videos = [VideoData(name=f"{i:02d}", scene=s, frames=rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8))
            for i, (n, s) in enumerate(zip(lengths, scenes))]
  return Split("toy", "training", videos)


def window_frames(start, t=T):
  return set(range(int(start), int(start) + t + 1))


def test_shapes_and_content():
  split = make_split()
  sampler = EpisodeSampler(split, t=T, k_support=2, n_query=1, seed=0)
  ep = sampler.sample(step=0, num_episodes=3)
  assert ep["support"].shape == (3, 2, T + 1, 4, 4, 3) and ep["support"].dtype == np.float32
  assert ep["query"].shape == (3, 1, T + 1, 4, 4, 3)
  assert ep["scene"].shape == (3,) and ep["scene"].dtype == np.int32
  idx = sampler.sample_indices(0, 3)
  for e in range(3):
    frames = split.videos[idx["video"][e]].frames
    for j, s in enumerate(idx["support_start"][e]):
      np.testing.assert_array_equal(ep["support"][e, j], scale_frames(frames[s:s + T + 1]))
    for j, s in enumerate(idx["query_start"][e]):
      np.testing.assert_array_equal(ep["query"][e, j], scale_frames(frames[s:s + T + 1]))


def test_disjoint_and_one_scene_per_episode():
  split = make_split()
  sampler = EpisodeSampler(split, t=T, k_support=2, n_query=1, seed=1)
  for step in range(20):
    idx = sampler.sample_indices(step, 4)
    assert len(set(idx["scene"].tolist())) == 4  # 4 scenes: drawn without replacement
    for e in range(4):
      v = split.videos[idx["video"][e]]
      assert sampler.scene_names[idx["scene"][e]] == v.scene  # support and query from the episode's scene
      sup = set().union(*(window_frames(s) for s in idx["support_start"][e]))
      qry = set().union(*(window_frames(s) for s in idx["query_start"][e]))
      assert not sup & qry
      assert max(sup | qry) < v.num_frames


def test_disjoint_starts_fill_exactly():
  rng = np.random.default_rng(0)
  # 3 windows of 3 frames in 9 frames: the only placement.
  np.testing.assert_array_equal(disjoint_starts(rng, 9, 3, 3), [0, 3, 6])
  seen = set()
  for _ in range(200):
    s = disjoint_starts(rng, 10, 3, 3)
    assert np.all(np.diff(s) >= 3) and s[-1] + 3 <= 10
    seen.add(tuple(s.tolist()))
  assert len(seen) == 4  # all C(4, 3) placements reached


def test_deterministic_and_seed_dependent():
  split = make_split()
  a = EpisodeSampler(split, t=T, k_support=1, n_query=2, seed=0).sample(5, 6)
  b = EpisodeSampler(split, t=T, k_support=1, n_query=2, seed=0).sample(5, 6)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  s = EpisodeSampler(split, t=T, k_support=1, n_query=2, seed=0)
  c = [s.sample_indices(st, 6) for st in range(5)]
  d = [EpisodeSampler(split, t=T, k_support=1, n_query=2, seed=1).sample_indices(st, 6) for st in range(5)]
  assert any(not np.array_equal(x["support_start"], y["support_start"]) for x, y in zip(c, d))
  # 6 episodes over 4 scenes: each scene at least once, none more than twice.
  counts = np.bincount(c[0]["scene"], minlength=4)
  assert counts.min() >= 1 and counts.max() <= 2


def test_scene_subset():
  split = make_split()
  sampler = EpisodeSampler(split, t=T, seed=0, scenes=["s1", "s3"])
  idx = sampler.sample_indices(0, 2)
  assert sorted(sampler.scene_names[i] for i in idx["scene"]) == ["s1", "s3"]
  with pytest.raises(DataError, match="nope"):
    EpisodeSampler(split, t=T, scenes=["nope"])


def test_k_too_large_error():
  split = make_split()
  # s2's only video has 9 frames: 3 disjoint windows of 3 frames; K=3 + Q=1 needs 4.
  with pytest.raises(DataError, match=r"scene s2 .*K = 3 .* only 3 disjoint windows"):
    EpisodeSampler(split, t=T, k_support=3, n_query=1)


def test_first_k_windows():
  split = make_split()
  v = split.videos[3]  # 9 frames
  x = first_k_windows(v, t=T, k=3)
  assert x.shape == (3, T + 1, 4, 4, 3)
  for j in range(3):
    np.testing.assert_array_equal(x[j], scale_frames(v.frames[j:j + T + 1]))
  assert first_k_windows(v, t=T, k=0).shape == (0, T + 1, 4, 4, 3)
  assert first_k_windows(v, t=T, k=7).shape[0] == 7  # 7 + t = 9 frames exactly
  with pytest.raises(DataError, match=r"video 03 has 9 frames, too short for K = 8"):
    first_k_windows(v, t=T, k=8)


def test_shots_sampler_draws_k_per_meta_batch():
  from jaxvad.data.episodes import ShotsSampler, make_sampler
  split = make_split(lengths=(20, 20), scenes=("s0", "s1"))
  sampler = make_sampler(split, t=T, k_support=(1, 3), n_query=1, seed=0)
  assert isinstance(sampler, ShotsSampler)
  ks = [sampler.sample(step, 2)["support"].shape[1] for step in range(20)]
  assert set(ks) == {1, 3}
  assert ks == [make_sampler(split, t=T, k_support=(1, 3), n_query=1, seed=0).sample(s, 2)["support"].shape[1]
                for s in range(20)]  # Deterministic from (seed, step): resumable.
  assert isinstance(make_sampler(split, t=T, k_support=2, n_query=1), EpisodeSampler)
  with pytest.raises(DataError, match="K = 6"):  # 7 disjoint windows of 3 frames do not fit in 20 frames.
    ShotsSampler(split, t=T, shots=(1, 6), n_query=1)
