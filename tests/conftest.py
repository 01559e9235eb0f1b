"""Shared test fixtures: the real benchmark data beside the repository (skipped cleanly where absent), tiny videos."""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

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


# Multi-process tests: no fixed deadline (a loaded machine is slow, not hung). A test fails when its processes print
# nothing for JAXVAD_TEST_IDLE_TIMEOUT seconds (a hang), or run longer than JAXVAD_TEST_TOTAL_CAP in all.
IDLE_TIMEOUT = float(os.environ.get("JAXVAD_TEST_IDLE_TIMEOUT", 600))
TOTAL_CAP = float(os.environ.get("JAXVAD_TEST_TOTAL_CAP", 3600))


def _kill_group(proc: subprocess.Popen) -> None:
  """Ends ``proc`` and everything it started (its own process group): SIGTERM, then SIGKILL."""
  if proc.poll() is not None and not _group_alive(proc.pid):
    return
  for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
    with contextlib.suppress(ProcessLookupError, PermissionError):
      os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
      proc.wait(timeout=wait)
    if not _group_alive(proc.pid):
      return


def _group_alive(pgid: int) -> bool:
  try:
    os.killpg(pgid, 0)
  except (ProcessLookupError, PermissionError):
    return False
  return True


def run_watched(commands: dict, *, idle_timeout: float | None = None, total_cap: float | None = None,
                poll: float = 0.2) -> dict:
  """Runs processes together under an idle-output watchdog; returns ``{name: (returncode, output)}``.

  Args:
    commands: ``{name: dict(args=[...], env={...}, cwd=...)}``; each process runs in its own session (process
      group), stdout and stderr merged.
    idle_timeout: fail when no process has printed anything for this long (default $JAXVAD_TEST_IDLE_TIMEOUT,
      600 s): a hang. Workers should log their progress (unbuffered) so that a slow machine is never mistaken
      for a hung one.
    total_cap: fail when they run longer than this in all (default $JAXVAD_TEST_TOTAL_CAP, 3600 s).
  A process that exits non-zero ends the others at once (peers of a failed process would wait forever). Every
  process group is killed before returning or failing: no orphans.
  """
  idle_timeout = IDLE_TIMEOUT if idle_timeout is None else idle_timeout
  total_cap = TOTAL_CAP if total_cap is None else total_cap
  procs, outputs, threads = {}, {}, []
  last = [time.monotonic()]
  lock = threading.Lock()

  def reader(name, stream):
    for line in iter(stream.readline, ""):
      with lock:
        outputs[name].append(line)
        last[0] = time.monotonic()
    stream.close()

  start = time.monotonic()
  failure = None
  try:
    for name, cmd in commands.items():
      env = dict(cmd.get("env") or os.environ, PYTHONUNBUFFERED="1")
      procs[name] = subprocess.Popen(cmd["args"], cwd=cmd.get("cwd"), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
      outputs[name] = []
      threads.append(threading.Thread(target=reader, args=(name, procs[name].stdout), daemon=True))
      threads[-1].start()
    while True:
      codes = {n: p.poll() for n, p in procs.items()}
      if all(c is not None for c in codes.values()):
        break
      if any(c not in (None, 0) for c in codes.values()):
        break  # A failed process: its peers would wait for it forever.
      now = time.monotonic()
      with lock:
        idle = now - last[0]
      if idle > idle_timeout:
        failure = f"no output from any process for {idle:.0f} s (JAXVAD_TEST_IDLE_TIMEOUT={idle_timeout:g}): hung"
        break
      if now - start > total_cap:
        failure = f"still running after {now - start:.0f} s (JAXVAD_TEST_TOTAL_CAP={total_cap:g})"
        break
      time.sleep(poll)
  finally:
    for proc in procs.values():  # Never leave a process (or a child of one) behind, even on failure.
      _kill_group(proc)
    for t in threads:
      t.join(timeout=10)
  results = {n: (p.returncode, "".join(outputs[n])) for n, p in procs.items()}
  if failure:
    tails = "\n".join(f"--- {n} (exit {rc}):\n{out[-2000:]}" for n, (rc, out) in results.items())
    pytest.fail(f"{failure}\n{tails}")
  return results


def run_on_cpu_devices(script: str, num_devices: int = 4, timeout: float | None = None) -> str:
  """Runs ``python -c script`` from the repository root on ``num_devices`` simulated CPU devices.

  The device count must be set before JAX starts, hence a subprocess, watched by `run_watched` (``timeout``, if
  given, is only a floor for its idle timeout: there is no fixed deadline). Fails the test with the script's
  output if it exits non-zero; returns its output.
  """
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])))
  idle = max(IDLE_TIMEOUT, timeout or 0)
  rc, out = run_watched({"script": dict(args=[sys.executable, "-c", script], env=env, cwd=REPO)},
                        idle_timeout=idle)["script"]
  assert rc == 0, out[-3000:]
  return out
