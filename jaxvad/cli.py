"""The ``jaxvad`` command line: synth | prepare | train | evaluate | run | demo | meta | adapt.

A thin layer: it parses arguments and calls library functions. User mistakes
(bad data, missing files, bad config values) end with a one-line ``error:``
message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from jaxvad import config_lib
from jaxvad.data.errors import DataError
from jaxvad.train import distributed


def _add_config_args(p: argparse.ArgumentParser, workdir: bool = True) -> None:
  p.add_argument("--config", required=True, help="config file with optional variant, e.g. configs/baseline.py:quick")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config field, e.g. --set train.num_steps=100 (repeatable)")
  if workdir:
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, metrics, results); resumes if present")
  p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args):
  return config_lib.apply_overrides(config_lib.load_config(args.config), args.set)


def cmd_synth(args) -> None:
  from jaxvad.data import synthetic
  splits = synthetic.make_benchmark(num_scenes=args.num_scenes, size=args.size, frames_per_video=args.frames,
                                    train_videos_per_scene=args.train_videos, test_videos_per_scene=args.test_videos,
                                    seed=args.seed)
  root = synthetic.write_benchmark(splits, args.out, progress=not args.no_progress)
  print(synthetic.describe(splits))
  print(f"wrote {root}")


def cmd_prepare(args) -> None:
  from jaxvad.data import multisource
  config = _config(args)
  for path in multisource.prepare_from_config(config.data, progress=not args.no_progress):
    print(f"cached {path}")


def cmd_train(args) -> None:
  from jaxvad import pipeline
  pipeline.train(_config(args), args.workdir, progress=not args.no_progress)


def cmd_evaluate(args) -> None:
  from jaxvad import pipeline
  pipeline.evaluate(_config(args), args.workdir, progress=not args.no_progress)


def cmd_run(args) -> None:
  from jaxvad import pipeline
  config = _config(args)
  pipeline.train(config, args.workdir, progress=not args.no_progress)
  pipeline.evaluate(config, args.workdir, progress=not args.no_progress)


def cmd_demo(args) -> None:
  from jaxvad import pipeline
  pipeline.demo(args.workdir, models=args.models, overrides=args.set, progress=not args.no_progress)


def cmd_meta(args) -> None:
  from jaxvad.meta import protocol
  protocol.run(_config(args), args.workdir, progress=not args.no_progress)


def cmd_adapt(args) -> None:
  from jaxvad.meta import protocol
  res = protocol.adapt_and_score(_config(args), args.workdir, args.video, shots=args.shots, method=args.method,
                                 out=args.out)
  print(f"scored {len(res['anomaly'])} frames ({res['note']}); per-frame scores in {res['out']}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxvad", description=__doc__.splitlines()[0])
  parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("synth", help="write the synthetic multi-scene benchmark in the real on-disk layout")
  p.add_argument("--out", required=True, help="output data set folder")
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--num-scenes", type=int, default=8)
  p.add_argument("--frames", type=int, default=120, help="frames per video")
  p.add_argument("--train-videos", type=int, default=2, help="training videos per scene")
  p.add_argument("--test-videos", type=int, default=2, help="test videos per scene")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=cmd_synth)

  p = sub.add_parser("prepare", help="decode, resize and cache the frames of a data set (resumable)")
  _add_config_args(p, workdir=False)
  p.set_defaults(func=cmd_prepare)

  for name, func, text in [("train", cmd_train, "train a model (resumes from --workdir)"),
                           ("evaluate", cmd_evaluate, "score the test videos and report AUC"),
                           ("run", cmd_run, "train, then evaluate")]:
    p = sub.add_parser(name, help=text)
    _add_config_args(p)
    distributed.add_flags(p)
    p.set_defaults(func=func)

  p = sub.add_parser("meta", help="pre-train, meta-train on source scenes, few-shot table on the target")
  _add_config_args(p)
  distributed.add_flags(p)
  p.set_defaults(func=cmd_meta)

  p = sub.add_parser("adapt", help="adapt a meta-trained model to one new video with its first K windows, score it")
  _add_config_args(p)
  p.add_argument("--video", required=True, help="folder of the video's frames")
  p.add_argument("--shots", type=int, default=1, help="K: the first K windows are the (normal) support set")
  p.add_argument("--method", default="meta", choices=["meta", "finetune"])
  p.add_argument("--out", default=None, help="output folder (default <workdir>/adapted/<video>)")
  p.set_defaults(func=cmd_adapt)

  p = sub.add_parser("demo", help="synthetic benchmark -> train -> evaluate -> AUC table and plots (CPU, minutes)")
  p.add_argument("--workdir", default="runs/demo")
  p.add_argument("--models", default="baseline", help="comma-separated models to train and compare")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the quick config")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=cmd_demo)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
  for noisy in ("absl", "jax", "orbax", "etils"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  try:
    if hasattr(args, "coordinator") and distributed.initialize(args):
      import jax
      if jax.process_index() != 0:  # Only process 0 logs and shows progress bars.
        logging.getLogger().setLevel(logging.WARNING)
        args.no_progress = True
    args.func(args)
  except (DataError, FileNotFoundError, KeyError, ValueError) as e:
    if args.verbose:
      raise
    msg = str(e).strip().strip("'\"").splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"error: {msg}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
