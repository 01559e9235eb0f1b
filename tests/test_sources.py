"""Config -> split: synthetic in memory, scene selection, missing roots."""

import pytest

from jaxvad import config_lib
from jaxvad.data import sources
from jaxvad.data.errors import DataError


def _config(**kw):
  c = config_lib.data_config("synthetic", size=32)
  c.synthetic.update(num_scenes=3, frames_per_video=12)
  c.update(kw)
  return c


def test_synthetic_in_memory_and_scene_selection():
  assert sources.load(_config(), "training").scenes == ["01", "02", "03"]
  held_out = sources.load(_config(scenes=("03",)), "testing")
  assert held_out.scenes == ["03"] and all(v.name.startswith("03_") for v in held_out.videos)
  assert held_out.labels is not None


def test_unknown_scene_and_missing_root_are_data_errors(tmp_path):
  with pytest.raises(DataError, match=r"no scene \['09'\]"):
    sources.load(_config(scenes=("09",)), "training")
  real = config_lib.data_config("ped2", size=32)
  real.root = str(tmp_path / "absent")
  real.cache_dir = str(tmp_path / "cache")
  with pytest.raises(DataError, match="does not exist"):
    sources.load(real, "training", progress=False)
