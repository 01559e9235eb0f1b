"""Shared test fixtures: the real benchmark data beside the repository (skipped cleanly where absent), tiny videos."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("JAXVAD_DATA") or REPO.parent / "shared" / "data").expanduser().resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path to $JAXVAD_DATA, default ../shared/data (real UCSD Ped2 and label files); skips the test if absent."""
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


def run_on_cpu_devices(script: str, num_devices: int = 4, timeout: int = 600) -> str:
  """Runs ``python -c script`` from the repository root on ``num_devices`` simulated CPU devices.

  The device count must be set before JAX starts, hence a subprocess. Fails the test with the
  script's stderr if it exits non-zero; returns its stdout.
  """
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])))
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout
