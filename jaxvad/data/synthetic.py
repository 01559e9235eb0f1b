"""Synthetic multi-scene benchmark (SPEC 1.4): procedural surveillance videos with labelled anomalies.

Normal objects enter and walk along each scene's walkway, either way, at the scene's speed. Test videos add anomalous
objects (drawn on top, so their pixel masks are exactly their visible pixels) during one clear interval per kind:
  speed       the scene's own object, 3.5-4.5x the normal speed, running back and forth along the walkway;
  appearance  a foreign shape (cross / diamond), at least 1.8x the normal size, in a strongly different colour;
  direction   the scene's own object crossing the walkway perpendicularly, back and forth;
  intrusion   the scene's own object wandering in an off-walkway region that normal objects never use;
  zigzag      the scene's own object moving along the walkway with fast, wide lateral zig-zags.
Everything is pure NumPy and deterministic from a seed; a 64x64 video of 120 frames renders in about 20 ms
(256x256: about 0.2 s), almost all of it in whole-video array passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxvad.data.synthetic_io import write_benchmark
from jaxvad.data.synthetic_scenes import FOREIGN_SHAPES, REFERENCE_SIZE, SceneSpec, make_scenes
from jaxvad.data.synthetic_scenes import render_background, shape_coverage
from jaxvad.data.synthetic_tracks import Track, anomaly_track, normal_tracks
from jaxvad.data.types import Split, VideoData
from jaxvad.errors import ConfigError

ANOMALY_KINDS = ("speed", "appearance", "direction", "intrusion", "zigzag")
DATASET_NAME = "synthetic"


@dataclasses.dataclass(frozen=True)
class AnomalyEvent:
  """One anomaly of a test video: its kind and the inclusive 0-based frame interval where it is visible."""

  kind: str
  first: int
  last: int


@dataclasses.dataclass
class SyntheticVideo(VideoData):
  """A rendered video plus what generated it (the scene and the anomaly events, empty for normal videos)."""

  spec: SceneSpec | None = None
  anomalies: tuple[AnomalyEvent, ...] = ()


def _schedule(kinds: Sequence[str], num_frames: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
  """Non-overlapping anomaly intervals: each kind gets one slot of [12%, 95%) of the video, 40-65% of it."""
  a0, b0 = int(0.12 * num_frames), int(0.95 * num_frames)
  slot = (b0 - a0) / len(kinds)
  out = []
  for i, kind in enumerate(kinds):
    start, dur = a0 + int(i * slot), max(int(round(rng.uniform(0.4, 0.65) * slot)), 1)
    first = start + int(rng.integers(0, max(int(slot) - dur, 0) + 1))
    out.append((kind, first, min(first + dur, num_frames) - 1))
  return out


def _draw(frames: np.ndarray, track: Track, masks: np.ndarray | None) -> list[int]:
  """Alpha-blends `track` into float frames [N, H, W, 3]; returns the frames where it covers a pixel by >= 0.5."""
  n, size = frames.shape[0], frames.shape[1]
  r = 0.75 * track.size + 1.0  # bounding half-extent of every shape
  drawn = []
  for t in np.flatnonzero(~np.isnan(track.x)):
    x, y = track.x[t], track.y[t]
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, size)
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, size)
    if x0 >= x1 or y0 >= y1:
      continue
    dx = np.arange(x0, x1)[None, :] - x
    dy = np.arange(y0, y1)[:, None] - y
    alpha = shape_coverage(track.shape, dx, dy, track.size)[..., None]  # [h, w, 1]
    patch = frames[t, y0:y1, x0:x1]
    frames[t, y0:y1, x0:x1] = patch * (1.0 - alpha) + track.color * alpha
    if masks is not None:
      hit = alpha[..., 0] >= 0.5
      if hit.any():
        masks[t, y0:y1, x0:x1][hit] = 255
        drawn.append(int(t))
  return drawn


def render_video(scene: SceneSpec, *, name: str, num_frames: int = 120, size: int = 64, seed: int = 0,
                 anomaly: str | Sequence[str] | None = None) -> SyntheticVideo:
  """Renders one video of `scene`.

  The normal content (objects, lighting, sensor noise) depends only on (scene, size, num_frames, seed), so the same
  call with and without `anomaly` differs only in the anomalous objects.

  Args:
    scene: the camera view.
    name: video name, e.g. "01_001".
    num_frames: number of frames N.
    size: frame height = width in px (16 or more; 32 to 256 are the intended sizes).
    seed: seed of the video's randomness.
    anomaly: None for a normal (training) video, or one kind or a list of kinds from ANOMALY_KINDS.

  Returns:
    A SyntheticVideo with uint8 frames [N, size, size, 3]; for anomalous videos int8 labels [N] (1 where an anomalous
    object is visible) and uint8 masks [N, size, size] (255 on anomalous pixels); otherwise labels = masks = None.
  """
  if size < 16:
    raise ConfigError(f"size must be >= 16 px, got {size}")
  if num_frames < 1:
    raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
  kinds = [anomaly] if isinstance(anomaly, str) else list(anomaly or [])
  for kind in kinds:
    if kind not in ANOMALY_KINDS:
      raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {ANOMALY_KINDS}")
  normal_rng, anomaly_rng, noise_rng = (
      np.random.default_rng(s) for s in np.random.SeedSequence([seed, scene.seed]).spawn(3))
  gain = normal_rng.uniform(0.96, 1.04)  # per-video lighting
  frames = np.empty((num_frames, size, size, 3), np.float32)
  frames[:] = render_background(scene, size) * gain
  for track in normal_tracks(scene, num_frames, size, normal_rng):
    _draw(frames, track, None)
  masks, labels, events = None, None, []
  if kinds:
    masks = np.zeros((num_frames, size, size), np.uint8)
    for kind, first, last in _schedule(kinds, num_frames, anomaly_rng):
      drawn = _draw(frames, anomaly_track(kind, scene, num_frames, size, first, last, anomaly_rng), masks)
      if drawn:
        events.append(AnomalyEvent(kind, min(drawn), max(drawn)))
    labels = masks.reshape(num_frames, -1).any(axis=1).astype(np.int8)
  noise = noise_rng.standard_normal((num_frames, size, size, 1), dtype=np.float32)
  noise *= scene.noise * 255.0
  frames *= 255.0  # in place: at 256 px these whole-video passes dominate the cost
  frames += noise
  frames += 0.5
  np.clip(frames, 0.0, 255.0, out=frames)
  frames = frames.astype(np.uint8)
  return SyntheticVideo(name=name, scene=scene.scene_id, frames=frames, labels=labels, masks=masks, spec=scene,
                        anomalies=tuple(events))


def _kinds_for(index: int, num_test: int) -> list[str]:
  """Anomaly kinds of test video `index`: cycles through ANOMALY_KINDS; with fewer videos than kinds, several each."""
  k = len(ANOMALY_KINDS)
  if num_test >= k:
    return [ANOMALY_KINDS[index % k]]
  return [ANOMALY_KINDS[i] for i in range(k) if i % num_test == index]


def _video_seed(seed: int, scene_index: int, split: int, video: int) -> int:
  return int(np.random.SeedSequence([seed, scene_index, split, video]).generate_state(1)[0])


def make_benchmark(*, num_scenes: int = 8, size: int = 64, train_videos_per_scene: int = 2,
                   test_videos_per_scene: int = 2, frames_per_video: int = 120, seed: int = 0,
                   scenes: Sequence[SceneSpec] | None = None) -> dict[str, Split]:
  """Generates the benchmark in memory.

  Args:
    num_scenes: number of scenes (ignored when `scenes` is given).
    size: frame size in px.
    train_videos_per_scene: normal training videos per scene.
    test_videos_per_scene: test videos per scene; their anomaly kinds cycle through ANOMALY_KINDS in order.
    frames_per_video: frames per video.
    seed: seed of scenes and videos.
    scenes: explicit scenes, e.g. `make_scenes(...)[:4]`.

  Returns:
    {"training": Split, "testing": Split} of dataset "synthetic", videos named "<scene>_<video:03d>" (1-based).
  """
  specs = list(scenes) if scenes is not None else make_scenes(num_scenes, seed)
  num_test = len(specs) * test_videos_per_scene
  train, test = [], []
  for si, spec in enumerate(specs):
    for vi in range(train_videos_per_scene):
      train.append(render_video(spec, name=f"{spec.scene_id}_{vi + 1:03d}", num_frames=frames_per_video, size=size,
                                seed=_video_seed(seed, si, 0, vi)))
    for vi in range(test_videos_per_scene):
      kinds = _kinds_for(len(test), num_test)
      test.append(render_video(spec, name=f"{spec.scene_id}_{vi + 1:03d}", num_frames=frames_per_video, size=size,
                               seed=_video_seed(seed, si, 1, vi), anomaly=kinds))
  return {"training": Split(DATASET_NAME, "training", sorted(train, key=lambda v: v.name)),
          "testing": Split(DATASET_NAME, "testing", sorted(test, key=lambda v: v.name))}


def describe(splits: dict[str, Split]) -> str:
  """A human-readable summary: scenes (normal behaviour at the 64-px reference), videos, frames, anomalies."""
  lines = []
  for key, split in splits.items():
    frac = "" if split.labels is None else f", {100 * float(np.mean(split.labels)):.1f}% abnormal frames"
    lines.append(f"{split.dataset}/{key}: {len(split.videos)} videos, {split.num_frames} frames, "
                 f"{len(split.scenes)} scenes{frac}")
  specs = {v.spec.scene_id: v.spec for s in splits.values() for v in s.videos if getattr(v, "spec", None)}
  if specs:
    lines.append(f"scene  shape       size  speed  walkway(deg)  width  density   (px, px/frame at "
                 f"{REFERENCE_SIZE} px)")
    for sid, sp in sorted(specs.items()):
      lines.append(f"{sid:<6} {sp.shape:<11} {sp.object_size:>4.1f}  {sp.speed:>5.2f}  {sp.walkway_angle:>12.1f}  "
                   f"{sp.walkway_width:>5.2f}  {sp.density:>7.1f}")
  stats: dict[str, list[int]] = {}
  for split in splits.values():
    for v in split.videos:
      for ev in getattr(v, "anomalies", ()):
        st = stats.setdefault(ev.kind, [0, 0, 0])
        st[0], st[1], st[2] = st[0] + 1, st[1] + ev.last - ev.first + 1, st[2] + v.num_frames
  if stats:
    lines.append("anomaly      videos  abnormal frames (fraction of their videos)")
    for kind in sorted(stats, key=lambda k: ANOMALY_KINDS.index(k) if k in ANOMALY_KINDS else 99):
      n, ab, tot = stats[kind]
      lines.append(f"{kind:<12} {n:>6}  {ab:>6} ({100 * ab / tot:.1f}%)")
  return "\n".join(lines)


__all__ = ["ANOMALY_KINDS", "AnomalyEvent", "FOREIGN_SHAPES", "SceneSpec", "SyntheticVideo", "describe",
           "make_benchmark", "make_scenes", "render_video", "write_benchmark"]
