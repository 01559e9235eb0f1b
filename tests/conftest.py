"""Shared test fixtures: the real benchmark data beside the repository (skipped cleanly where absent), tiny videos."""

import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path to ../shared/data (real UCSD Ped2 and label files); skips the test if absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real benchmark data not found at {SHARED_DATA} (tests that need it are skipped)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def ped2_root(shared_data) -> pathlib.Path:
  """Path to the real UCSD Ped2 frame folders; skips the test if absent."""
  root = shared_data / "ped2"
  if not (root / "testing" / "frames").is_dir():
    pytest.skip(f"UCSD Ped2 not found at {root}")
  return root


def _write_video(path: pathlib.Path, levels, size: int = 32) -> None:
  """Writes a tiny mpeg4 video (PyAV) whose frame i is uniformly ``levels[i]`` gray."""
  av = pytest.importorskip("av", reason="PyAV is needed to write the fixture videos")
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w") as out:
    stream = out.add_stream("mpeg4", rate=25)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    for v in levels:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), v, np.uint8), format="rgb24")))
    out.mux(stream.encode())


@pytest.fixture
def write_video():
  """``write_video(path, levels, size=32)``: a tiny gray-level fixture video for raw-archive tests."""
  return _write_video
