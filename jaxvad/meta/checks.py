"""Checks of a few-shot experiment that run before any training step (they used to fail after pre-training).

Each raises a one-line `jaxvad.errors.ConfigError` / `DataError` naming the field or video, the problem and the fix:

- ``meta.learner`` and ``meta.adapted`` against the known learners and adapted sets;
- ``meta.episodes`` against the device count (a meta-batch is split over the devices);
- every source scene eligible for meta-training episodes (K support + Q query disjoint windows), and one
  pre-training batch of source windows (and of target training windows for the in-domain reference);
- the target's test videos against the tested shots: K support windows and at least one scored frame after
  the first t + max(K) frames (protocol "test_first"), and with protocol "train_random" enough training windows
  of each target camera for max(K) shots.
"""

from __future__ import annotations

import jax

from jaxvad.data.episodes import EpisodeSampler
from jaxvad.data.types import Split
from jaxvad.errors import ConfigError, DataError
from jaxvad.meta import core, learners

SUPPORTS = ("test_first", "train_random")


def device_count(config) -> int:
  n = config.get("num_devices", None)
  return int(n) if n else jax.device_count()


def check_episodes_vs_devices(episodes: int, num_devices: int) -> None:
  """A meta-batch of ``episodes`` is split evenly over ``num_devices``."""
  if episodes < 1 or episodes % num_devices:
    fix = max(num_devices, -(-max(episodes, 1) // num_devices) * num_devices)
    raise ConfigError(f"meta.episodes={episodes} is not a positive multiple of the {num_devices} device(s) the "
                      f"meta-batch is split over; use --set meta.episodes={fix} (or set num_devices)")


def check_source_scenes(source: Split, *, t: int, k_support: int, n_query: int) -> None:
  """Every source scene has a video long enough for one episode (DataError naming the scene otherwise)."""
  for v in source.videos:
    if v.num_frames < t + 1:
      raise DataError(f"source video {v.name} ({source.dataset}) has {v.num_frames} frames, shorter than one "
                      f"window of t+1 = {t + 1}; remove it or lower data.t")
  EpisodeSampler(source, t=t, k_support=k_support, n_query=n_query)  # Raises naming the first ineligible scene.


def check_target_videos(target: Split, *, t: int, shots, supports=("test_first",),
                        target_train: Split | None = None) -> None:
  """Each target test video holds the shots and leaves frames to score; each target camera can give shots."""
  kmax = max(int(k) for k in shots)
  unknown = [s for s in supports if s not in SUPPORTS]
  if unknown:
    raise ConfigError(f"fewshot.support={tuple(supports)} has unknown protocol(s) {unknown}; use {SUPPORTS}")
  for v in target.videos:
    if v.num_frames < t + kmax + 1:
      raise DataError(f"target video {v.name} ({target.dataset}/{target.split}) has {v.num_frames} frames; "
                      f"K = {kmax} shots of t+1 = {t + 1} frames leave no frame to score (needs t + max(K) + 1 = "
                      f"{t + kmax + 1}); lower fewshot.shots or drop the video")
  if "train_random" not in supports:
    return
  if target_train is None or not target_train.videos:
    raise DataError(f"fewshot.support 'train_random' needs the target's training videos; "
                    f"{target.dataset} has none")
  for scene in target.scenes:
    windows = sum(max(0, v.num_frames - t) for v in target_train.videos if v.scene == scene)
    if windows < kmax:
      raise DataError(f"target camera {scene} of {target.dataset} has {windows} training windows of t+1 = {t + 1} "
                      f"frames, fewer than K = {kmax} shots for support 'train_random'; lower fewshot.shots")


def check_windows_vs_batch(split: Split, *, t: int, batch_size: int, what: str) -> None:
  """A training split holds at least one batch of windows."""
  windows = sum(max(0, v.num_frames - t) for v in split.videos)
  if windows < batch_size:
    raise DataError(f"{what} ({split.dataset}/{split.split}) has {windows} windows of t+1 = {t + 1} frames, fewer "
                    f"than train.batch_size={batch_size}; lower train.batch_size or add videos")


def check_all(config, source: Split, target: Split, target_train: Split | None = None) -> None:
  """All checks of this module for a `jaxvad meta` config (called before pre-training)."""
  mc = config.meta
  learners.from_config(mc)  # meta.learner: one of learners.LEARNERS.
  core.adapted_keys(mc.get("adapted", "dpu_head"))  # meta.adapted: one of core.ADAPTED_SETS.
  check_episodes_vs_devices(int(mc.episodes), device_count(config))
  check_windows_vs_batch(source, t=config.data.t, batch_size=int(config.train.batch_size), what="the source")
  if config.fewshot.get("reference", False):
    if target_train is None or not target_train.videos:
      raise DataError(f"fewshot.reference=True trains on the target's training videos; {target.dataset} has none "
                      f"(set fewshot.reference=False)")
    check_windows_vs_batch(target_train, t=config.data.t, batch_size=int(config.train.batch_size),
                           what="the target's training split (in-domain reference)")
  kmax = max(tuple(mc.get("shots", ())) or (mc.k_support,))  # meta.shots: K drawn per meta-batch.
  check_source_scenes(source, t=config.data.t, k_support=int(kmax), n_query=mc.n_query)
  check_target_videos(target, t=config.data.t, shots=config.fewshot.shots,
                      supports=tuple(config.fewshot.get("support", ("test_first",))), target_train=target_train)
