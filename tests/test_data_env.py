"""The tests find the real data through $JAXVAD_DATA (default ../shared/data beside the repository)."""

import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent


def _shared_data(env_value):
  env = {k: v for k, v in os.environ.items() if k != "JAXVAD_DATA"}
  if env_value is not None:
    env["JAXVAD_DATA"] = env_value
  proc = subprocess.run([sys.executable, "-c", "import conftest; print(conftest.SHARED_DATA)"], cwd=TESTS,
                        env=dict(env, PYTHONPATH=str(TESTS)), capture_output=True, text=True, check=True)
  return pathlib.Path(proc.stdout.strip())


def test_jaxvad_data_is_honoured(tmp_path):
  assert _shared_data(str(tmp_path)) == tmp_path.resolve()


def test_default_is_shared_data_beside_the_repo():
  assert _shared_data(None) == (TESTS.parent.parent / "shared" / "data").resolve()
  assert _shared_data("") == (TESTS.parent.parent / "shared" / "data").resolve()
