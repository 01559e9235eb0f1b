"""Damaged checkpoints: fall back to the previous good step with a warning; one line when none is left;
a checkpoint of another model is one line too (and is left alone)."""

import logging
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvad.errors import CheckpointError
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import loop
from jaxvad.train import mesh as mesh_lib
from tests.test_train import tiny_config


def _state(value: float):
  w = np.random.default_rng(int(value)).normal(size=(64, 32)).astype(np.float32) + value
  return {"w": jnp.asarray(w), "b": {"c": jnp.arange(8, dtype=jnp.float32) + value},
          "step": jnp.asarray(int(value), jnp.int32)}


def _write(directory, steps=(1, 2)):
  ckpt = ckpt_lib.Checkpointer(directory, max_to_keep=5)
  for s in steps:
    ckpt.save(s, _state(float(s)))
  ckpt.close()


def _largest_file(folder):
  """The largest array data file (tensorstore's ``.../d/<hash>``) of a step folder."""
  return max((p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)


def _damage(folder, how):
  if how == "truncated":
    f = _largest_file(folder)
    f.write_bytes(f.read_bytes()[:50])
  elif how == "empty":
    shutil.rmtree(folder)
    folder.mkdir()
  elif how == "nonfinite":  # Rewrite the step with a NaN in it (as a flipped byte in a float could).
    step = int(folder.name)
    shutil.rmtree(folder)
    ckpt = ckpt_lib.Checkpointer(folder.parent, max_to_keep=5)
    bad = _state(float(step))
    bad["w"] = bad["w"].at[3, 4].set(jnp.nan)
    ckpt.save(step, bad)
    ckpt.close()


@pytest.mark.parametrize("how", ["truncated", "empty", "nonfinite"])
def test_damaged_latest_step_falls_back_with_a_warning(tmp_path, how, caplog, capfd):
  _write(tmp_path / "ck")
  _damage(tmp_path / "ck" / "2", how)
  ckpt = ckpt_lib.Checkpointer(tmp_path / "ck")
  with caplog.at_level(logging.WARNING):
    restored = ckpt.restore(_state(0.0))
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(_state(1.0)["w"]))
  warnings = [r.getMessage() for r in caplog.records if r.name == ckpt_lib.__name__]
  assert len(warnings) == 1 and "step 2:" in warnings[0] and "restored step 1 instead" in warnings[0]
  assert ckpt.latest_step == 1 and (tmp_path / "ck" / "2.damaged").is_dir()
  ckpt.save(2, _state(5.0))  # Training goes on: the step can be written again.
  ckpt.close()
  assert "Traceback" not in capfd.readouterr().err


def test_no_good_step_left_is_one_line(tmp_path):
  _write(tmp_path / "ck")
  _damage(tmp_path / "ck" / "2", "empty")
  _damage(tmp_path / "ck" / "1", "truncated")
  ckpt = ckpt_lib.Checkpointer(tmp_path / "ck")
  with pytest.raises(CheckpointError) as e:
    ckpt.restore(_state(0.0))
  ckpt.close()
  msg = str(e.value)
  assert "\n" not in msg and "step 2: the step folder is empty" in msg and "step 1: unreadable data" in msg
  assert str(tmp_path / "ck") in msg


def test_checkpoint_of_another_model_is_one_line_and_kept(tmp_path):
  config = tiny_config()
  mesh = mesh_lib.make_mesh(1)
  _, _, state = loop.create_train_state(config, mesh, (16, 16))
  ckpt = ckpt_lib.Checkpointer(tmp_path / "ck")
  ckpt.save(3, state)
  ckpt.close()
  config.model.width = 0.125  # Another model in the same workdir.
  _, _, other = loop.create_train_state(config, mesh, (16, 16))
  ckpt = ckpt_lib.Checkpointer(tmp_path / "ck")
  with pytest.raises(CheckpointError) as e:
    ckpt.restore(other)
  ckpt.close()
  msg = str(e.value)
  assert "\n" not in msg and f"{tmp_path / 'ck'}/3 holds another model" in msg and "new workdir" in msg
  assert (tmp_path / "ck" / "3").is_dir() and not list((tmp_path / "ck").glob("*.damaged"))


def test_training_another_model_in_a_workdir_is_one_line_and_keeps_its_record(tmp_path):
  from jaxvad import run_record
  from jaxvad.data import synthetic
  from jaxvad.errors import WorkdirError
  config = tiny_config()
  _, _, state = loop.create_train_state(config, mesh_lib.make_mesh(1), (16, 16))
  workdir = tmp_path / "run"
  ckpt = ckpt_lib.Checkpointer(workdir / "checkpoints")
  ckpt.save(6, state)
  ckpt.close()
  record = config.to_json_best_effort(indent=2)
  (workdir / "config.json").write_text(record)
  (workdir / "train_done.json").write_text("{}")
  config.model.width = 0.125
  split = synthetic.make_benchmark(size=16, **config.data.synthetic)["training"]
  # The record refuses the changed model before the checkpoint is read ...
  with pytest.raises(WorkdirError, match=r"model.width: 0.0625 -> 0.125"):
    loop.train(config, workdir, split, progress=False)
  # ... and when the change is allowed, the checkpoint of the other model is one line.
  with run_record.allowing_changes(), pytest.raises(
      CheckpointError, match=r"^checkpoint .*/run/checkpoints/6 holds another model [^\n]*$"):
    loop.train(config, workdir, split, progress=False)
  assert (workdir / "config.json").read_text() == record
  assert (workdir / "train_done.json").exists()