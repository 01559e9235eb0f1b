"""Multi-host training and evaluation: two processes on localhost (CPU collectives) equal one process with as many
devices."""

import json
import os
import pathlib
import socket
import sys
import time

import jax
import numpy as np
import pytest

from conftest import run_watched
from jaxvad.data import synthetic
from jaxvad.data.windows import WindowSource
from jaxvad.train import distributed
from jaxvad.train import mesh as mesh_lib
from jaxvad.train.metrics_log import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config():
  import tests.test_train as tt  # pylint: disable=import-outside-toplevel
  config = tt.tiny_config()
  config.train.update(num_steps=4, log_every=2, checkpoint_every=2)
  config.eval.batch_size = 30  # Not a multiple of 4 devices: evaluation rounds it up.
  return config


def test_resolve_flags_env_and_single_process():
  assert distributed.resolve(None, environ={}) is None
  assert distributed.resolve({"distributed": True}, environ={}) == {}
  env = {"JAXVAD_COORDINATOR": "h:1234", "JAXVAD_NUM_PROCESSES": "2", "JAXVAD_PROCESS_ID": "1"}
  assert distributed.resolve(None, environ=env) == {"coordinator_address": "h:1234", "num_processes": 2,
                                                    "process_id": 1}
  # Flags take precedence over the environment.
  args = {"coordinator": "a:1", "num_processes": 4, "process_id": 0}
  assert distributed.resolve(args, environ=env) == {"coordinator_address": "a:1", "num_processes": 4,
                                                    "process_id": 0}
  # Auto-detection fills in what is not given (e.g. the coordinator port on SLURM).
  assert distributed.resolve({"distributed": True, "process_id": 3}, environ={}) == {"process_id": 3}
  assert distributed.resolve({"distributed": True}, environ={"JAXVAD_LOCAL_DEVICE_IDS": "0,1"}) == {
      "local_device_ids": [0, 1]}
  with pytest.raises(ValueError, match="missing"):
    distributed.resolve({"coordinator": "a:1"}, environ={})
  with pytest.raises(ValueError, match="not in"):
    distributed.resolve(args | {"process_id": 4}, environ={})
  assert not distributed.initialize(None, environ={})  # Single process: a no-op.
  assert distributed.local_rows(mesh_lib.make_mesh(1), 4) is None


def test_process_rows_union_is_the_batch():
  split = synthetic.make_benchmark(size=16, **tiny_config().data.synthetic)["training"]
  source = WindowSource(split, t=4)
  for step in (0, 5):
    full = source.batch_at(step, 4, seed=0)
    parts = [source.batch_at(step, 4, seed=0, rows=slice(2 * p, 2 * p + 2)) for p in range(2)]
    for k in full:
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k])
    it = source.iterate(step, 1, 4, seed=0, rows=slice(2, 4), prefetch=1)
    np.testing.assert_array_equal(next(it)[1]["frames"], parts[1]["frames"])
    it.close()


WORKER = r"""
import logging, sys, pathlib
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # Progress for the idle watchdog.
import jax, numpy as np
from jaxvad.train import distributed
multi = distributed.initialize()
from jaxvad.data import synthetic
from jaxvad.train import loop
import tests.test_distributed as td
workdir, expect_devices = pathlib.Path(sys.argv[1]), int(sys.argv[2])
assert jax.device_count() == expect_devices, jax.devices()
config = td.tiny_config()
split = synthetic.make_benchmark(size=16, **config.data.synthetic)["training"]
state = loop.train(config, workdir, split, progress=False)
leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
np.savez(workdir / f"params_{jax.process_index()}.npz", *leaves)
from jaxvad import pipeline
res = pipeline.evaluate(config, workdir, progress=False)  # Batch 30 -> 32: rounded up to the 4 devices.
np.savez(workdir / f"scores_{jax.process_index()}.npz", auc=res["auc"],
         anomaly=np.concatenate(res["frame_scores"]["anomaly"]))
print("ok", jax.process_index(), jax.process_count(), jax.local_device_count(), int(state.step), flush=True)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _command(workdir, devices_per_process, total_devices, env_extra, script=WORKER) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}", **env_extra)
  for k in ("JAXVAD_COORDINATOR", "JAXVAD_NUM_PROCESSES", "JAXVAD_PROCESS_ID", "JAXVAD_DISTRIBUTED",
            "JAXVAD_LOCAL_DEVICE_IDS"):
    if k not in env_extra:
      env.pop(k, None)
  return dict(args=[sys.executable, "-c", script, str(workdir), str(total_devices)], cwd=REPO, env=env)


def _run_single_and_two_processes(tmp_path, script=WORKER) -> dict:
  """Runs ``script`` as 1 process x 4 devices ("single") and 2 processes x 2 devices ("p0", "p1").

  No fixed deadline: `conftest.run_watched` fails only when no process prints anything for
  $JAXVAD_TEST_IDLE_TIMEOUT seconds (the workers log their progress), and kills every process group.
  """
  port = _free_port()
  commands = {"single": _command(tmp_path / "single", 4, 4, {}, script)}
  for pid in range(2):
    commands[f"p{pid}"] = _command(tmp_path / "multi", 2, 4, {
        "JAXVAD_COORDINATOR": f"localhost:{port}", "JAXVAD_NUM_PROCESSES": "2", "JAXVAD_PROCESS_ID": str(pid)},
        script)
  results = run_watched(commands)
  for name, (code, output) in results.items():
    assert code == 0, f"{name} failed:\n{output[-3000:]}"
  return {name: output for name, (_, output) in results.items()}


def test_two_processes_match_one_process(tmp_path):
  """2 processes x 2 CPU devices (gloo collectives) == 1 process x 4 devices: loss and parameters to 1e-5,
  then the evaluation's scores and AUC."""
  outputs = _run_single_and_two_processes(tmp_path)
  assert "ok 0 1 4 4" in outputs["single"]
  assert "ok 0 2 2 4" in outputs["p0"] and "ok 1 2 2 4" in outputs["p1"]

  single = read_metrics(tmp_path / "single" / "metrics.jsonl")
  multi = read_metrics(tmp_path / "multi" / "metrics.jsonl")
  assert [r["step"] for r in single] == [r["step"] for r in multi] == [2, 4]  # Written once, by process 0.
  np.testing.assert_allclose([r["loss"] for r in multi], [r["loss"] for r in single], rtol=0, atol=1e-5)
  ref = np.load(tmp_path / "single" / "params_0.npz")
  for pid in range(2):  # Every process holds the same (replicated) parameters.
    got = np.load(tmp_path / "multi" / f"params_{pid}.npz")
    assert len(got.files) == len(ref.files)
    for k in ref.files:
      np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-5)
  assert sorted(p.name for p in (tmp_path / "multi" / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
  assert (tmp_path / "multi" / "train_done.json").exists()

  # Evaluation: every process scores every frame (its devices compute their rows of each batch).
  ref = np.load(tmp_path / "single" / "scores_0.npz")
  for pid in range(2):
    got = np.load(tmp_path / "multi" / f"scores_{pid}.npz")
    assert got["anomaly"].shape == ref["anomaly"].shape
    np.testing.assert_allclose(got["anomaly"], ref["anomaly"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["auc"], ref["auc"], rtol=0, atol=1e-6)
  assert (tmp_path / "multi" / "eval" / "results.json").exists() and (tmp_path / "multi" / "eval" / "roc.png").exists()


META_WORKER = r"""
import sys
from jaxvad import cli
import tests.test_fewshot as tf
args = ["meta", "--config", "configs/meta.py:synthetic", "--workdir", sys.argv[1], "--no-progress"]
for item in tf.TINY + ["meta.episodes=4", "meta.log_every=2", "meta.checkpoint_every=2"]:
  args += ["--set", item]
assert cli.main(args) == 0
import jax
assert jax.device_count() == int(sys.argv[2]), jax.devices()
print("ok", jax.process_index(), jax.process_count(), flush=True)
"""


def test_meta_protocol_on_two_processes_matches_one_process(tmp_path):
  """`jaxvad meta` (pre-train, meta-train with episodes sharded over 4 devices, few-shot table) as 2 processes
  x 2 devices gives the 1-process x 4-device meta-training metrics and few-shot AUCs."""
  outputs = _run_single_and_two_processes(tmp_path, META_WORKER)
  assert "ok 0 1" in outputs["single"] and "ok 0 2" in outputs["p0"] and "ok 1 2" in outputs["p1"]
  single = read_metrics(tmp_path / "single" / "meta" / "metrics.jsonl")
  multi = read_metrics(tmp_path / "multi" / "meta" / "metrics.jsonl")
  assert [r["step"] for r in multi] == [r["step"] for r in single] == [2]  # Written once, by process 0.
  np.testing.assert_allclose(multi[0]["meta_loss"], single[0]["meta_loss"], rtol=0, atol=1e-5)
  ref = json.loads((tmp_path / "single" / "fewshot" / "fewshot.json").read_text())
  got = json.loads((tmp_path / "multi" / "fewshot" / "fewshot.json").read_text())
  for method, per_k in ref["auc"].items():
    np.testing.assert_allclose([got["auc"][method][k] for k in per_k], list(per_k.values()), rtol=0, atol=1e-4)


def test_watchdog_kills_a_silent_process_group_and_its_children(tmp_path):
  """A process that stops printing is reported as hung, and neither it nor its child survives."""
  pid_file = tmp_path / "child.pid"
  script = ("import subprocess, sys, time; c = subprocess.Popen(['sleep', '1000']); "
            f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('started', flush=True); time.sleep(1000)")
  with pytest.raises(pytest.fail.Exception, match="no output .* hung"):
    run_watched({"hang": dict(args=[sys.executable, "-c", script])}, idle_timeout=3)
  child = pathlib.Path(f"/proc/{int(pid_file.read_text())}/stat")

  def alive() -> bool:  # Gone, or a zombie waiting to be reaped, counts as dead.
    try:
      return child.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
      return False

  for _ in range(600):  # SIGKILL was sent; on a loaded machine the kernel may take a moment to end it.
    if not alive():
      break
    time.sleep(0.1)
  assert not alive()


def test_watchdog_lets_a_slow_process_that_prints_finish():
  script = "import time\nfor i in range(12):\n  print(i, flush=True); time.sleep(0.25)\n"
  (code, out), = run_watched({"slow": dict(args=[sys.executable, "-c", script])}, idle_timeout=2).values()
  assert code == 0 and out.split() == [str(i) for i in range(12)]


def test_watchdog_ends_the_peers_of_a_failed_process():
  results = run_watched({"fails": dict(args=[sys.executable, "-c", "raise SystemExit(3)"]),
                         "waits": dict(args=[sys.executable, "-c", "import time; time.sleep(1000)"])},
                        idle_timeout=600)
  assert results["fails"][0] == 3 and results["waits"][0] != 0
