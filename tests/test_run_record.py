"""The workdir is the source of truth (run_record), checks before any work (preflight), shipped configs."""

import logging
import os
import pathlib
import shutil
import subprocess
import sys
import venv

import numpy as np
import pytest
from PIL import Image

from jaxvad import cli, config_lib, preflight, run_record
from jaxvad.errors import ConfigError, WorkdirError

REPO = pathlib.Path(__file__).resolve().parents[1]
# Synthetic data generated in memory (no cache), 32x32, a tiny model, 2 steps.
TINY = ["data.size=(32,32)", "data.synthetic.num_scenes=2", "data.synthetic.frames_per_video=24",
        "data.synthetic.train_videos_per_scene=1", "data.synthetic.test_videos_per_scene=1",
        "model.width=0.0625", "train.num_steps=2", "train.batch_size=4", "train.checkpoint_every=2",
        "eval.batch_size=8", "eval.plots=False"]


def _sets(items):
  return [a for item in items for a in ("--set", item)]


def run_cli(args, capsys):
  code = cli.main(args)
  captured = capsys.readouterr()
  return code, captured.err.strip()


def assert_one_line_error(code, err, *needles):
  assert code == 2, err
  assert err.startswith("error: ") and "\n" not in err, err
  for needle in needles:
    assert needle in err, err


def quick(overrides=()):
  return config_lib.apply_overrides(config_lib.load_config("configs/baseline.py:quick"), list(overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir trained for 2 steps by `jaxvad train` with TINY at 32x32."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  assert cli.main(["train", "--config", "configs/baseline.py:quick", "--workdir", str(workdir), "--no-progress",
                   *_sets(TINY)]) == 0
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  dst = tmp_path / "run"
  shutil.copytree(trained, dst)
  return dst


# --- run_record: which fields matter ------------------------------------------------------------------------------

def test_diff_refuses_state_and_data_fields_and_frees_run_length_fields():
  old = quick(TINY)
  for item, key in [("optim.learning_rate=0.01", "optim.learning_rate"), ("seed=1", "seed"),
                    ("data.size=(64,64)", "data.size"), ("model.width=0.125", "model.width"),
                    ("train.batch_size=8", "train.batch_size"), ("data.t=2", "data.t")]:
    changes = run_record.diff(old, quick(TINY + [item]))
    assert [c[0] for c in changes] == [key], item
  free = ["train.num_steps=50", "train.log_every=1", "train.checkpoint_every=7", "eval.batch_size=3",
          "eval.score_weights={'psnr': 0.5}", "data.cache_dir=/elsewhere", "num_devices=1", "eval.out=eval2"]
  assert run_record.diff(old, quick(TINY + free)) == []
  assert {c[0] for c in run_record.diff(old, quick(TINY + free), include_free=True)} >= {
      "train.num_steps", "data.cache_dir", "eval.batch_size"}
  # data.root is compared as a resolved path.
  a, b = quick(TINY + [f"data.root={REPO}"]), quick(TINY + [f"data.root={REPO}/configs/.."])
  assert run_record.diff(a, b) == []


def test_check_refuses_with_a_one_line_diff_unless_allowed(tmp_path):
  run_record.write(tmp_path, quick(TINY))
  new = quick(TINY + ["optim.learning_rate=0.01", "seed=3", "train.num_steps=9"])
  with pytest.raises(WorkdirError) as e:
    run_record.check(tmp_path, new)
  msg = str(e.value)
  assert "\n" not in msg and "optim.learning_rate: 0.001 -> 0.01" in msg and "seed: 0 -> 3" in msg
  assert "num_steps" not in msg and "--allow-config-change" in msg and "new --workdir" in msg
  with run_record.allowing_changes():
    assert [c[0] for c in run_record.check(tmp_path, new)] == ["optim.learning_rate", "seed"]
  assert run_record.check(tmp_path / "fresh", new) == []  # No record: nothing to compare.


def test_resume_with_changed_config_is_refused_and_keeps_the_record(workdir, capsys):
  record = (workdir / "config.json").read_bytes()
  steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  for item in ("optim.learning_rate=0.01", "seed=5", "data.size=(16,16)"):
    code, err = run_cli(["train", "--config", "configs/baseline.py:quick", "--workdir", str(workdir),
                         "--no-progress", *_sets(TINY + [item])], capsys)
    assert_one_line_error(code, err, item.split("=")[0], "->", "--allow-config-change")
  assert (workdir / "config.json").read_bytes() == record
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps
  # Free fields resume: no --config reads the workdir's config.json; the record then holds the new length.
  assert cli.main(["train", "--workdir", str(workdir), "--no-progress", "--set", "train.num_steps=3"]) == 0
  assert "3" in sorted(p.name for p in (workdir / "checkpoints").iterdir())
  assert run_record.load(workdir).train.num_steps == 3
  assert run_record.load(workdir).data.size == (32, 32)


def test_failed_restore_never_overwrites_the_record(workdir):
  """A model change pushed through with --allow-config-change fails to restore: config.json still describes the
  checkpoints."""
  from jaxvad import pipeline  # pylint: disable=import-outside-toplevel
  record = (workdir / "config.json").read_bytes()
  with run_record.allowing_changes(), pytest.raises(Exception):  # pylint: disable=broad-exception-caught
    pipeline.train(quick(TINY + ["model.width=0.125"]), workdir, progress=False)
  assert (workdir / "config.json").read_bytes() == record


def test_evaluate_reads_the_workdir_config_and_refuses_another_size(workdir, capsys):
  # 17.1: trained at 32x32; a config without the size override would score at 64x64: refused.
  code, err = run_cli(["evaluate", "--config", "configs/baseline.py:quick", "--workdir", str(workdir),
                       "--no-progress", *_sets([t for t in TINY if not t.startswith("data.size")])], capsys)
  assert_one_line_error(code, err, "data.size: [32, 32] -> [64, 64]")
  assert not (workdir / "eval").exists()
  # No --config: W/config.json is used (eval.* may change freely).
  assert cli.main(["evaluate", "--workdir", str(workdir), "--no-progress", "--set", "eval.out=eval_b"]) == 0
  assert (workdir / "eval_b" / "results.json").exists() and (workdir / "eval_b" / "scores.npz").exists()


# --- preflight: before any work ------------------------------------------------------------------------------------

def test_evaluate_without_checkpoint_creates_nothing(tmp_path, capsys):
  missing = tmp_path / "never_trained"
  code, err = run_cli(["evaluate", "--workdir", str(missing)], capsys)
  assert_one_line_error(code, err, str(missing), "jaxvad train")
  code, err = run_cli(["evaluate", "--config", "configs/baseline.py:quick", "--workdir", str(missing)], capsys)
  assert_one_line_error(code, err, str(missing), "jaxvad train")
  assert not missing.exists()
  empty = tmp_path / "empty"
  empty.mkdir()
  code, err = run_cli(["evaluate", "--config", "configs/baseline.py:quick", "--workdir", str(empty)], capsys)
  assert_one_line_error(code, err, "no trained model", "checkpoint")
  assert list(empty.iterdir()) == []


def test_sections_checked_before_any_work(tmp_path, capsys):
  workdir = tmp_path / "meta"
  code, err = run_cli(["meta", "--config", "configs/baseline.py:quick", "--workdir", str(workdir)], capsys)
  assert_one_line_error(code, err, "'meta'", "jaxvad meta", "configs/meta.py")
  assert not workdir.exists()
  with pytest.raises(ConfigError, match="'fewshot'"):
    preflight.check_sections(quick(), "adapt")


@pytest.mark.parametrize("item,needles", [
    ("train.num_steps=abc", ["train.num_steps", "int", "'abc'"]),
    ("data.size=32", ["data.size", "(32,32)"]),
    ("train.num_steps.x=1", ["train.num_steps", "not a section"]),
    ("nope.x=1", ["nope"]),
    ("train.checkpoint_every=0", ["train.checkpoint_every", ">= 1"]),
    ("train.log_every=-1", ["train.log_every", ">= 1"]),
    ("train.batch_size=0", ["train.batch_size"]),
    ("data.size=(32,)", ["data.size", "two integers"]),
])
def test_set_mistakes_are_one_line(item, needles, tmp_path, capsys):
  workdir = tmp_path / "w"
  code, err = run_cli(["train", "--config", "configs/baseline.py:quick", "--workdir", str(workdir),
                       "--set", item], capsys)
  assert_one_line_error(code, err, *needles)
  assert not workdir.exists()


def test_ml_collections_config_form(tmp_path, capsys):
  parser = cli.build_parser()
  args, extra = parser.parse_known_args(["train", "--workdir", "w", "--config", "configs/baseline.py:quick",
                                         "--config.train.num_steps=30", "--config.seed", "2"])
  cli._ml_collections_overrides(parser, args, extra)  # pylint: disable=protected-access
  assert args.set == ["train.num_steps=30", "seed=2"]
  code, err = run_cli(["train", "--config", "configs/baseline.py:quick", "--workdir", str(tmp_path / "w"),
                       "--config.train.num_steps=abc"], capsys)
  assert_one_line_error(code, err, "train.num_steps")


def test_config_files_that_are_not_python(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  pathlib.Path("exp.py").write_text("train:\n  num_steps: [3\n")
  pathlib.Path("words.py").write_text("this is not python\n")  # Parses, then fails to run.
  pathlib.Path("exp.yaml").write_text("train:\n  num_steps: 3\n")
  pathlib.Path("noget.py").write_text("X = 1\n")
  for name, needle in [("exp.py", "not valid Python"), ("words.py", "NameError"), ("exp.yaml", "not a Python file"),
                       ("noget.py", "get_config")]:
    code, err = run_cli(["prepare", "--config", name], capsys)
    assert_one_line_error(code, err, name, needle)


def test_unusable_workdir_and_cache_before_any_work(tmp_path, capsys):
  afile = tmp_path / "afile"
  afile.write_text("x")
  base = ["train", "--config", "configs/baseline.py:ped2_cpu", "--set", f"data.root={tmp_path}"]
  code, err = run_cli(base + ["--workdir", str(afile)], capsys)
  assert_one_line_error(code, err, str(afile), "is a file", "--workdir")
  code, err = run_cli(base + ["--workdir", str(afile / "sub")], capsys)
  assert_one_line_error(code, err, "cannot be created", "--workdir")
  code, err = run_cli(base + ["--workdir", str(tmp_path / "w"), "--set", f"data.cache_dir={afile}"], capsys)
  assert_one_line_error(code, err, str(afile), "data.cache_dir")
  assert not (tmp_path / "w").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write read-only folders")
def test_read_only_workdir(tmp_path, capsys):
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o500)
  try:
    code, err = run_cli(["train", "--config", "configs/baseline.py:quick", "--workdir", str(ro / "w")], capsys)
    assert_one_line_error(code, err, "not writable", "--workdir")
  finally:
    ro.chmod(0o700)


def test_probe_sees_a_folder_that_refuses_files(tmp_path, monkeypatch):
  monkeypatch.setattr(preflight, "_probe_writable", lambda folder: False)
  with pytest.raises(WorkdirError, match="not writable"):
    preflight.check_writable(tmp_path / "x", "workdir", flag="--workdir")


def test_fewshot_table_k_plus_t_checked_before_training(tmp_path, capsys):
  import tests.test_fewshot as tf  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "meta"
  items = tf.TINY + ["target.synthetic.frames_per_video=12", "fewshot.shots=(0,1,8)"]
  code, err = run_cli(["meta", "--config", "configs/meta.py:synthetic", "--workdir", str(workdir), "--no-progress",
                       *_sets(items)], capsys)
  assert_one_line_error(code, err, "12 frames", "K = 8", "t = 4", "K <= 7")
  assert not (workdir / "pretrain").exists()


def test_adapt_k_plus_t_is_one_line(tmp_path, capsys):
  import tests.test_fewshot as tf  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "meta"
  run_record.write(workdir, config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), tf.TINY))
  for stage in ("pretrain", "meta"):
    (workdir / stage / "checkpoints" / "3").mkdir(parents=True)
  video = tmp_path / "cam" / "01"
  video.mkdir(parents=True)
  for i in range(8):
    Image.fromarray(np.full((16, 16, 3), 10 * i, np.uint8)).save(video / f"{i:03d}.png")
  code, err = run_cli(["adapt", "--workdir", str(workdir), "--video", str(video), "--shots", "4"], capsys)
  assert_one_line_error(code, err, "01 has 8 frames", "K = 4", "K <= 3")
  code, err = run_cli(["adapt", "--workdir", str(tmp_path / "none"), "--video", str(video)], capsys)
  assert_one_line_error(code, err, "jaxvad meta")
  # The meta workdir's record rules adapt and a resumed `jaxvad meta` too.
  code, err = run_cli(["adapt", "--workdir", str(workdir), "--video", str(video), "--set", "data.size=(32,32)"],
                      capsys)
  assert_one_line_error(code, err, "data.size: [16, 16] -> [32, 32]")
  code, err = run_cli(["meta", "--workdir", str(workdir), "--set", "meta.learning_rate=0.5"], capsys)
  assert_one_line_error(code, err, "meta.learning_rate: 0.001 -> 0.5")


# --- the CLI's error boundary and help -----------------------------------------------------------------------------

def test_internal_bugs_keep_their_traceback(monkeypatch):
  def buggy(args):
    raise KeyError("an internal bug")
  parser = cli.build_parser()
  real_parse = parser.parse_known_args

  def parse(argv=None):
    args, extra = real_parse(argv)
    args.func = buggy
    return args, extra
  monkeypatch.setattr(parser, "parse_known_args", parse)
  monkeypatch.setattr(cli, "build_parser", lambda: parser)
  with pytest.raises(KeyError, match="an internal bug"):
    cli.main(["prepare", "--config", "configs/baseline.py:quick"])


def test_help_texts():
  parser = cli.build_parser()
  subs = next(a for a in parser._actions if a.dest == "command").choices  # pylint: disable=protected-access
  assert set(subs) >= {"synth", "prepare", "train", "evaluate", "run", "meta", "adapt", "demo"}
  for name, p in subs.items():
    assert p.description and len(p.description) > 30, name
    for action in p._actions:  # pylint: disable=protected-access
      assert action.help, f"{name} {action.option_strings}"
  synth = subs["synth"].format_help()
  assert "(default: 64)" in synth and "(default: 8)" in synth and "same seed" in synth and "(default: 0)" in synth
  assert "(default: False)" not in synth and "(default: None)" not in subs["adapt"].format_help()
  for name in ("evaluate", "adapt"):
    text = subs[name].format_help()
    assert "resumes if present" not in text and "trained" in text
  assert "Meta-SGD" in subs["adapt"].format_help()


# --- configs: which file, shipped with the package -----------------------------------------------------------------

def test_shipped_configs_from_anywhere_and_shadow_warning(tmp_path, monkeypatch, caplog):
  monkeypatch.chdir(tmp_path)
  caplog.set_level(logging.INFO)
  c = config_lib.load_config("configs/mpn.py:quick")  # No configs/ here: the shipped one.
  assert c.model.name == "mpn"
  assert config_lib.load_config("baseline:quick").model.name == "baseline"
  assert "loaded from" in caplog.text and str((REPO / "configs" / "mpn.py").resolve()) in caplog.text
  caplog.clear()
  (tmp_path / "configs").mkdir()
  text = (REPO / "configs" / "baseline.py").read_text().replace("c.seed = 0", "c.seed = 123")
  (tmp_path / "configs" / "baseline.py").write_text(text)
  assert config_lib.load_config("configs/baseline.py:quick").seed == 123
  assert "shadows the shipped" in caplog.text and str(tmp_path / "configs" / "baseline.py") in caplog.text


def test_every_package_is_listed_in_pyproject():
  import tomllib  # pylint: disable=import-outside-toplevel
  cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "jaxvad").rglob("__init__.py")}
  assert set(cfg["packages"]) == on_disk | {"jaxvad.configs"}
  assert cfg["package-dir"] == {"jaxvad.configs": "configs"} and (REPO / "configs" / "__init__.py").exists()


@pytest.mark.slow
def test_wheel_install_finds_shipped_configs(tmp_path):
  """A regular (non-editable) install in a temporary venv: `--config configs/...` works from any folder."""
  src, wheels = tmp_path / "src", tmp_path / "wheels"  # Built from a copy: the build leaves nothing in the repo.
  shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                           ".venv", ".ci-venv", "runs", "data_cache", "experiments"))
  clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # pip must not see a jaxvad on the path.
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)], check=True,
                 env=clean)
  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=True)
  py = env_dir / "bin" / "python"
  subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", *wheels.glob("jaxvad-*.whl")], check=True,
                 env=clean)
  # The dependencies come from this interpreter's site-packages (PYTHONPATH processes no .pth files, so an
  # editable jaxvad there is not seen).
  import sysconfig  # pylint: disable=import-outside-toplevel
  env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
  work = tmp_path / "elsewhere"
  work.mkdir()
  script = ("from jaxvad import config_lib; import jaxvad; c = config_lib.load_config('configs/meta.py:synthetic');"
            "print(jaxvad.__file__, c.model.name, config_lib.resolve_config_path('configs/pgm.py'))")
  proc = subprocess.run([py, "-c", script], cwd=work, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert str(env_dir) in out and " mpn " in out and "jaxvad/configs/pgm.py" in out
  out = subprocess.run([env_dir / "bin" / "jaxvad", "prepare", "--help"], cwd=work, env=env, capture_output=True,
                       text=True, check=True).stdout
  assert "--config" in out
