"""The ``jaxvad`` command line: synth | prepare | train | evaluate | run | demo | meta | adapt | stream.

A thin layer: it parses arguments, checks what can be checked before any work (`jaxvad.preflight`,
`jaxvad.run_record`) and calls library functions. User mistakes (every `jaxvad.errors.UserError`: bad data,
missing files, bad config values, an unusable workdir) end with a one-line ``error:`` message and exit
status 2; anything else is a bug in jaxvad and keeps its traceback.

The workdir is the source of truth: with ``--workdir W`` and no ``--config``, ``train`` (resume),
``evaluate``, ``run``, ``meta`` and ``adapt`` use ``W/config.json``, the config W's checkpoints were made with.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxvad import config_lib
from jaxvad import preflight
from jaxvad import run_record
from jaxvad.errors import ConfigError, UserError
from jaxvad.train import distributed

log = logging.getLogger("jaxvad")

CONFIG_HELP = ("config file and variant: a shipped config (configs/baseline.py:quick, or baseline:quick) from "
               "anywhere, a .py file of yours defining get_config(), or a run's config.json")
SET_HELP = ("override a config field (repeatable): --set train.num_steps=100, --set data.size=(32,32), "
            "--set data.root=/data/ped2; values are Python literals, else strings. The ml_collections form "
            "--config.train.num_steps=100 works too")


class _Formatter(argparse.RawDescriptionHelpFormatter):
  """Keeps descriptions as written and shows meaningful defaults ("(default: 64)")."""

  def _get_help_string(self, action):
    text = action.help or ""
    default = action.default
    if ("%(default)" not in text and action.option_strings and default is not None and default is not False
        and default != [] and default is not argparse.SUPPRESS):
      text += " (default: %(default)s)"
    return text


def _add_config_args(p: argparse.ArgumentParser, *, workdir: str | None, config_required: bool = False) -> None:
  """``--config``, ``--set``, ``--no-progress`` and, with a ``workdir`` help text, ``--workdir``."""
  if config_required:
    p.add_argument("--config", required=True, help=CONFIG_HELP)
  else:
    p.add_argument("--config", default=None,
                   help=CONFIG_HELP + "; default: the workdir's config.json (W/config.json)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
  if workdir is not None:
    p.add_argument("--workdir", required=True, help=workdir)
    p.add_argument("--allow-config-change", action="store_true",
                   help="use a config that differs from W/config.json in fields that affect the trained state or "
                        "the data (refused by default; see docs/usage.md)")
  p.add_argument("--no-progress", action="store_true", help="no progress bars (for batch jobs and logs)")


def _config(args, command: str):
  """The config of a subcommand: ``--config`` (else ``W/config.json``) with ``--set``, checked before any work."""
  workdir = getattr(args, "workdir", None)
  saved = run_record.load(workdir) if workdir else None
  if args.config:
    config, spec = config_lib.load_config(args.config), args.config
  elif saved is not None:
    config, spec = saved, str(run_record.record_path(workdir))
    log.info("config from %s (the config this workdir's run was made with)", spec)
  elif workdir:
    if command in ("evaluate", "adapt", "stream"):
      preflight.require_trained(workdir, command)
    raise ConfigError(f"no --config given and {run_record.record_path(workdir)} does not exist: pass --config "
                      f"(e.g. --config configs/baseline.py:quick)")
  else:
    raise ConfigError("no --config given (e.g. --config configs/baseline.py:quick)")
  config = config_lib.apply_overrides(config, args.set)
  preflight.check_command(command, config, workdir, spec=spec)
  if workdir:
    run_record.check(workdir, config, allow=getattr(args, "allow_config_change", False))
  return config


def cmd_synth(args) -> None:
  from jaxvad.data import synthetic
  preflight.check_writable(args.out, "output folder", flag="--out")
  splits = synthetic.make_benchmark(num_scenes=args.num_scenes, size=args.size, frames_per_video=args.frames,
                                    train_videos_per_scene=args.train_videos, test_videos_per_scene=args.test_videos,
                                    seed=args.seed)
  root = synthetic.write_benchmark(splits, args.out, progress=not args.no_progress)
  print(synthetic.describe(splits))
  print(f"wrote {root}")


def cmd_prepare(args) -> None:
  from jaxvad.data import multisource
  config = _config(args, "prepare")
  what = "TFDS data set" if config.data.get("format", "cache") == "tfds" else "cached"
  for path in multisource.prepare_from_config(config.data, progress=not args.no_progress):
    print(f"{what} {path}")


def cmd_train(args) -> None:
  from jaxvad import pipeline
  pipeline.train(_config(args, "train"), args.workdir, progress=not args.no_progress)


def cmd_evaluate(args) -> None:
  from jaxvad import pipeline
  pipeline.evaluate(_config(args, "evaluate"), args.workdir, progress=not args.no_progress)


def cmd_run(args) -> None:
  from jaxvad import pipeline
  config = _config(args, "run")
  pipeline.train(config, args.workdir, progress=not args.no_progress)
  pipeline.evaluate(config, args.workdir, progress=not args.no_progress)


def cmd_demo(args) -> None:
  from jaxvad import pipeline
  preflight.check_writable(args.workdir, "workdir", flag="--workdir")
  pipeline.demo(args.workdir, models=args.models, overrides=args.set, progress=not args.no_progress)


def cmd_meta(args) -> None:
  from jaxvad.meta import protocol
  protocol.run(_config(args, "meta"), args.workdir, progress=not args.no_progress)


def cmd_adapt(args) -> None:
  from jaxvad.meta import protocol
  if args.shots < 0:
    raise ConfigError(f"--shots {args.shots}: K must be >= 0")
  res = protocol.adapt_and_score(_config(args, "adapt"), args.workdir, args.video, shots=args.shots,
                                 method=args.method, out=args.out)
  print(f"scored {len(res['anomaly'])} frames ({res['note']}); per-frame scores in {res['out']}")


def cmd_stream(args) -> None:
  import pathlib
  from jaxvad.errors import DataError
  from jaxvad.meta import online
  if not pathlib.Path(args.video).exists():  # Before the config and model: the cheapest mistake first.
    raise DataError(f"video {args.video} does not exist: pass --video a folder of numbered frames or a video file")
  sets = [s for s in args.set if not s.strip().startswith("online.")]
  online_sets, args.set = [s for s in args.set if s.strip().startswith("online.")], sets
  config = _config(args, "stream")
  if "online" not in config:  # A workdir recorded before `online` existed: its defaults.
    config.online = dict(online.DEFAULTS)
  config = config_lib.apply_overrides(config, online_sets)
  res = online.stream_video(config, args.workdir, args.video, out=args.out)
  print(f"streamed {res['num_scored']} frames of {args.video}: {res['num_updates']} online steps, "
        f"{res['num_resets']} resets, {res['num_abnormal']} frames above the threshold; results in {res['out']}")


def cmd_build_tfds(args) -> None:
  """Builds TFDS data sets without TensorFlow; with several data sets, absent archives are skipped."""
  import pathlib  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
  from jaxvad.data import tfds_source
  from jaxvad.errors import DataError  # pylint: disable=redefined-outer-name,reimported
  tfds_source.import_tfds()
  from jaxvad.data.tfds_builders import build
  names = list(tfds_source.DATASET_BUILDERS) if args.dataset == "all" else [
      d.strip() for d in args.dataset.split(",") if d.strip()]
  if len(names) == 1:
    done = {names[0]: build.build(names[0], args.manual_dir, args.data_dir, size=args.size,
                                  progress=not args.no_progress)}
  else:
    done = build.build_many(names, args.manual_dir, args.data_dir, size=args.size, progress=not args.no_progress)
  for name, res in done.items():
    print(f"built {res}" if not isinstance(res, str) else f"skipped {name}: {res}")
  if not any(isinstance(r, pathlib.Path) for r in done.values()):
    raise DataError(f"nothing built from {args.manual_dir}")
  print(f"use it with --set data.format=tfds (data.tfds_dir defaults to {tfds_source.default_data_dir()})"
        if not args.data_dir else f"use it with --set data.format=tfds --set data.tfds_dir={args.data_dir}")


def _add_build_tfds_parser(sub) -> None:
  p = _sub(sub, "build-tfds", "build TFDS data sets from downloaded archives (no TensorFlow)",
           "Builds jaxvad TFDS data sets (array_record, one example per frame) from archives you downloaded and "
           "unpacked; see docs/datasets.md.\n"
           "Example: jaxvad build-tfds --dataset ped2 --manual-dir /data/raw --size 64")
  p.add_argument("--dataset", required=True,
                 help="ped2 | ped1 | avenue | shanghaitech | ucf_crime, a comma-separated list, or all "
                 "(with several, absent archives are skipped with a message)")
  p.add_argument("--manual-dir", required=True, help="folder where the archive(s) were unpacked")
  p.add_argument("--data-dir", default=None,
                 help="TFDS data directory (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
  p.add_argument("--size", default="256x256",
                 help="stored frame size: HxW, N (= NxN) or original (default: %(default)s); build the size you "
                 "train at (e.g. 64 for the CPU configs) for windows identical to the frame cache")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  p.set_defaults(func=cmd_build_tfds)


def _sub(sub, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
  return sub.add_parser(name, help=help_text, description=f"{help_text}.\n\n{description}".strip(),
                        formatter_class=_Formatter)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxvad", formatter_class=_Formatter,
      description="Video anomaly detection in JAX/Flax (MPN, PGM): data preparation, training, evaluation, "
                  "few-shot scene adaptation.",
      epilog="`jaxvad COMMAND --help` describes each command. With --workdir W and no --config, a command uses "
             "W/config.json, the config W's run was made with (docs/usage.md). Quick start: jaxvad demo")
  parser.add_argument("-v", "--verbose", action="store_true", help="log debug information; errors keep their traceback")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  p = _sub(sub, "synth", "write the synthetic multi-scene benchmark in the real on-disk layout",
           "Scenes differ in background, object size and speed; test videos hold labelled anomalies "
           "(foreign shapes, fast or reversed motion). The folder can be used as data.root.\n"
           "Example: jaxvad synth --out data/synthetic --size 64")
  p.add_argument("--out", required=True, help="output data set folder")
  p.add_argument("--size", type=int, default=64, help="frame height and width in pixels (square, >= 16)")
  p.add_argument("--num-scenes", type=int, default=8, help="number of scenes (cameras) 01, 02, ...")
  p.add_argument("--frames", type=int, default=120, help="frames per video")
  p.add_argument("--train-videos", type=int, default=2, help="training videos per scene")
  p.add_argument("--test-videos", type=int, default=2, help="test videos per scene")
  p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same data set")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  p.set_defaults(func=cmd_synth)

  p = _sub(sub, "prepare", "decode, resize and cache the frames of a data set (resumable)",
           "Reads data.root at data.size into data.cache_dir; train/evaluate do this on first use too.\n"
           "Example: JAXVAD_DATA=/data jaxvad prepare --config configs/baseline.py:ped2_cpu")
  _add_config_args(p, workdir=None, config_required=True)
  p.set_defaults(func=cmd_prepare)

  _add_build_tfds_parser(sub)

  workdir_train = ("output folder: checkpoints/, metrics.jsonl, config.json; training resumes from its latest "
                   "checkpoint if present (with the config it was made with)")
  workdir_eval = ("a trained model's folder (from `jaxvad train`): its latest checkpoint and config.json are used; "
                  "results go to W/<eval.out>/ (default W/eval/)")
  for name, func, text, desc, wtext in [
      ("train", cmd_train, "train a model (resumes from --workdir)",
       "Example: jaxvad train --config configs/baseline.py:quick --workdir runs/quick\n"
       "Resume or extend:  jaxvad train --workdir runs/quick --set train.num_steps=1000", workdir_train),
      ("evaluate", cmd_evaluate, "score the test videos with a trained model and report AUC",
       "Writes results.json, scores.npz, frames.csv and plots to W/eval/.\n"
       "Example: jaxvad evaluate --workdir runs/quick", workdir_eval),
      ("run", cmd_run, "train (or resume), then evaluate",
       "Example: jaxvad run --config configs/mpn.py:quick --workdir runs/mpn_quick", workdir_train)]:
    p = _sub(sub, name, text, desc)
    _add_config_args(p, workdir=wtext)
    distributed.add_flags(p)
    p.set_defaults(func=func)

  p = _sub(sub, "meta", "pre-train, meta-train on source scenes, few-shot table on the target",
           "Needs a config with meta, fewshot and target sections (configs/meta.py). Every stage resumes from "
           "the workdir: W/pretrain/, W/meta/, W/fewshot/.\n"
           "Example: jaxvad meta --config configs/meta.py:synthetic --workdir runs/meta_synthetic")
  _add_config_args(p, workdir="output folder (pretrain/, meta/, fewshot/, config.json); every stage resumes "
                              "from it if present")
  distributed.add_flags(p)
  p.set_defaults(func=cmd_meta)

  p = _sub(sub, "adapt", "adapt a meta-trained model to one new video with its first K windows, score it",
           "The first K windows of the video are taken as normal (the support set); frames from K + t on are "
           "scored.\nExample: jaxvad adapt --workdir runs/meta_synthetic --video data/cam/01 --shots 5")
  _add_config_args(p, workdir="a meta-trained folder (from `jaxvad meta`): its pretrain/ and meta/ checkpoints "
                              "and config.json are used")
  p.add_argument("--video", required=True, help="folder of the video's frames (numbered images)")
  p.add_argument("--shots", type=int, default=1, help="K: the first K windows are the (normal) support set")
  p.add_argument("--method", default="meta", choices=["meta", "finetune"],
                 help="meta: one Meta-SGD step with the learned step sizes alpha; finetune: plain gradient steps "
                      "with fewshot.finetune_lr (the paper's Finetune baseline)")
  p.add_argument("--out", default=None, help="output folder (default: W/adapted/<video>)")
  p.set_defaults(func=cmd_adapt)

  p = _sub(sub, "stream", "score a live video frame by frame and keep adapting online (docs/online.md)",
           "The first online.support windows (assumed normal) adapt the meta-trained model once; then every "
           "online.every frames one inner step on the online.recent latest windows scored normal, with a reset "
           "rule.\nExample: jaxvad stream --workdir runs/meta_synthetic --video data/cam/01 --set online.every=4")
  _add_config_args(p, workdir="a meta-trained folder (from `jaxvad meta`): its pretrain/ and meta/ checkpoints "
                              "and config.json are used")
  p.add_argument("--video", required=True, help="folder of the video's frames (numbered images) or a video file")
  p.add_argument("--out", default=None, help="output folder (default: W/stream/<video>)")
  p.set_defaults(func=cmd_stream)

  p = _sub(sub, "demo", "synthetic benchmark -> train -> evaluate -> AUC table and plots (CPU, minutes)",
           "Trains each model's `quick` config on a synthetic benchmark written under the workdir.\n"
           "Example: jaxvad demo --models baseline,mpn,pgm")
  p.add_argument("--workdir", default="runs/demo", help="output folder (data, cache, one folder per model)")
  p.add_argument("--models", default="baseline", help="comma-separated models to train and compare")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the quick config")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")
  p.set_defaults(func=cmd_demo)
  return parser


def _ml_collections_overrides(parser, args, extra: list[str]) -> None:
  """Moves ``--config.key=value`` / ``--config.key value`` (ml_collections' form) into ``--set``."""
  i, rest = 0, []
  while i < len(extra):
    tok = extra[i]
    if tok.startswith("--config.") and hasattr(args, "set"):
      key, eq, value = tok[len("--config."):].partition("=")
      if not eq:
        if i + 1 >= len(extra):
          parser.error(f"{tok} needs a value: {tok}=VALUE")
        value, i = extra[i + 1], i + 1
      args.set.append(f"{key}={value}")
    else:
      rest.append(tok)
    i += 1
  if rest:
    parser.error(f"unrecognized arguments: {' '.join(rest)} (config fields are set with --set KEY=VALUE)")


def _one_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  _ml_collections_overrides(parser, args, extra)
  logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
  for noisy in ("absl", "jax", "orbax", "etils"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    if hasattr(args, "coordinator") and distributed.initialize(args):
      import jax
      if jax.process_index() != 0:  # Only process 0 logs and shows progress bars.
        logging.getLogger().setLevel(logging.WARNING)
        args.no_progress = True
    with run_record.allowing_changes(getattr(args, "allow_config_change", False)):
      args.func(args)
  except UserError as e:  # Only user mistakes: anything else is a bug and keeps its traceback.
    if args.verbose:
      raise
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
