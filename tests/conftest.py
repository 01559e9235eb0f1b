"""Shared test fixtures: the real benchmark data beside the repository, skipped cleanly where absent."""

import pathlib

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
