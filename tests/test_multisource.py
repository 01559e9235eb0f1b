"""Several data sets as one meta-learning / pre-training source (``data.sources``, jaxvad.data.multisource)."""

import collections

import ml_collections
import numpy as np
import pytest
from conftest import SHARED_DATA

from jaxvad import config_lib
from jaxvad.data import multisource, synthetic
from jaxvad.data.episodes import EpisodeSampler
from jaxvad.data.synthetic_io import write_benchmark
from jaxvad.errors import ConfigError


def _write(root, seed, num_scenes=2):
  splits = synthetic.make_benchmark(size=16, num_scenes=num_scenes, frames_per_video=12, train_videos_per_scene=1,
                                    test_videos_per_scene=1, seed=seed)
  write_benchmark(splits, root, progress=False)
  return splits


def _data(tmp_path, sources):
  c = config_lib.data_config("synthetic", size=16)
  c.cache_dir = str(tmp_path / "cache")
  c.sources = tuple(sources)
  return c


def test_two_sources_with_the_same_scene_names_stay_apart(tmp_path):
  # Two data sets declared in the config alone (names unknown to jaxvad), same video and scene names, one cache.
  a = _write(tmp_path / "cam_a", seed=1)["training"]
  b = _write(tmp_path / "cam_b", seed=2)["training"]
  assert [v.name for v in a.videos] == [v.name for v in b.videos]  # Same names on disk ...
  assert not np.array_equal(a.videos[0].frames, b.videos[0].frames)  # ... different content.
  c = _data(tmp_path, [dict(name="mycam", root=str(tmp_path / "cam_a"), scene_rule="prefix"),
                       dict(name="othercam", root=str(tmp_path / "cam_b"), scene_rule="prefix")])
  split = multisource.load(c, "training", progress=False)
  assert split.scenes == ["mycam/01", "mycam/02", "othercam/01", "othercam/02"]
  by_name = {v.name: v for v in split.videos}
  for name, ref in (("mycam", a), ("othercam", b)):
    for v in ref.videos:
      np.testing.assert_array_equal(np.asarray(by_name[f"{name}/{v.name}"].frames), v.frames)
  # Each source has its own cache folder (first level: the source name).
  assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["mycam", "othercam"]
  # Loading again reads the caches back unchanged (no mixing through the shared cache_dir).
  again = multisource.load(c, "training", progress=False)
  for v in again.videos:
    np.testing.assert_array_equal(np.asarray(v.frames), np.asarray(by_name[v.name].frames))


def test_episodes_draw_from_every_source_scene_and_never_from_the_target(tmp_path):
  _write(tmp_path / "cams", seed=3)
  c = _data(tmp_path, [dict(name="synthetic", scenes=("01", "02")),
                       dict(name="cams", root=str(tmp_path / "cams"), scene_rule="prefix", scenes=("02",))])
  c.synthetic.update(num_scenes=3, frames_per_video=12, train_videos_per_scene=1, test_videos_per_scene=1)
  split = multisource.load(c, "training", progress=False)
  assert split.scenes == ["cams/02", "synthetic/01", "synthetic/02"]
  target = synthetic.make_benchmark(size=16, num_scenes=3, frames_per_video=12, train_videos_per_scene=1,
                                    test_videos_per_scene=1)["training"]
  target_frames = [v.frames for v in target.videos if v.scene == "03"]
  sampler = EpisodeSampler(split, t=2, k_support=1, n_query=1, seed=0)
  drawn = collections.Counter()
  for step in range(10):
    idx = sampler.sample_indices(step, 3)
    drawn.update(sampler.scene_names[s] for s in idx["scene"])
    for vi in idx["video"]:
      frames = split.videos[int(vi)].frames
      assert not any(np.array_equal(frames, f) for f in target_frames)
  assert set(drawn) == set(split.scenes) and len(set(drawn.values())) == 1  # Balanced without weights.


def test_source_weights_set_the_draw_probabilities(tmp_path):
  _write(tmp_path / "s2", seed=4)
  c = _data(tmp_path, [dict(name="synthetic", scenes=("01", "02"), weight=3.0),
                       dict(name="synthetic2", root=str(tmp_path / "s2"), scene_rule="prefix", scenes=("01",))])
  c.synthetic.update(num_scenes=2, frames_per_video=12, train_videos_per_scene=1, test_videos_per_scene=1)
  split = multisource.load(c, "training", progress=False)
  # synthetic2 has no weight: it counts 1; synthetic's 3 is shared by its 2 scenes.
  assert split.scene_weights == {"synthetic/01": 1.5, "synthetic/02": 1.5, "synthetic2/01": 1.0}
  sampler = EpisodeSampler(split, t=2, k_support=1, n_query=1, seed=0, scene_weights=split.scene_weights)
  names = [sampler.scene_names[s] for step in range(400) for s in sampler.sample_indices(step, 10)["scene"]]
  frac = collections.Counter(n.split("/")[0] for n in names)["synthetic"] / len(names)
  assert abs(frac - 0.75) < 0.03  # 4000 draws: std 0.007.


def test_config_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"sources\[0\] has no name"):
    multisource.source_configs(_data(tmp_path, [dict(root="x")]))
  with pytest.raises(ConfigError, match="unknown field.*'rot'"):
    multisource.source_configs(_data(tmp_path, [dict(name="cam", rot="x")]))
  with pytest.raises(ConfigError, match="names 'cam' twice"):
    multisource.source_configs(_data(tmp_path, [dict(name="cam", root="x"), dict(name="cam", root="y")]))
  with pytest.raises(ConfigError, match="cam.*has no root"):
    multisource.source_configs(_data(tmp_path, [dict(name="cam")]))
  with pytest.raises(ConfigError, match="weight=-1"):
    multisource.source_configs(_data(tmp_path, [dict(name="cam", root="x", weight=-1)]))
  with pytest.raises(ConfigError, match="scene_rule"):
    multisource.source_configs(_data(tmp_path, [dict(name="cam", root="x", scene_rule="folder")]))


def test_without_sources_one_data_set_as_before(tmp_path):
  c = config_lib.data_config("synthetic", size=16)
  c.synthetic.update(num_scenes=2, frames_per_video=12, train_videos_per_scene=1, test_videos_per_scene=1)
  split = multisource.load(c, "training", progress=False)
  assert split.scenes == ["01", "02"] and not isinstance(split, multisource.MultiSplit)


@pytest.mark.slow
def test_realscenes_and_synthetic_as_one_source(tmp_path):
  root = SHARED_DATA / "realscenes"
  if not (root / "training" / "videos").is_dir():
    pytest.skip(f"realscenes not found at {root}")
  c = _data(tmp_path, [dict(name="realscenes", root=str(root), scene_rule="prefix"), dict(name="synthetic")])
  c.synthetic.update(num_scenes=2, frames_per_video=12, train_videos_per_scene=1, test_videos_per_scene=1)
  split = multisource.load(c, "training", progress=False)
  assert split.scenes == ["realscenes/avenue", "realscenes/pets09", "synthetic/01", "synthetic/02"]
  counts = collections.Counter(v.scene for v in split.videos)
  assert counts["realscenes/avenue"] == 4 and counts["realscenes/pets09"] == 1
  assert sum(v.num_frames for v in split.videos if v.scene.startswith("realscenes/")) == 3188


def test_prepare_each_on_disk_source(tmp_path):
  _write(tmp_path / "cam_a", seed=1)
  c = _data(tmp_path, [dict(name="mycam", root=str(tmp_path / "cam_a"), scene_rule="prefix"), dict(name="synthetic")])
  paths = multisource.prepare_from_config(c, progress=False)
  assert len(paths) == 1 and "mycam" in str(paths[0]) and "training" in str(paths[0])
