"""Few-shot episodes for meta-learning (MPN's MPU, SPEC 3.5; paper Sec. 3.3-3.4).

An episode is one scene: K support windows and Q query windows drawn from one video of that scene, with no
frame shared between the support and the query set (all K+Q windows are mutually disjoint). Episodes are a
pure function of ``(seed, step)`` so meta-training resumes exactly.
"""

from __future__ import annotations

import numpy as np

from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData
from jaxvad.data.windows import check_frame_shapes, gather_windows
from jaxvad.errors import ConfigError


def first_k_windows(video: VideoData, t: int, k: int) -> np.ndarray:
  """The test-time shots: the first K windows (starts 0 .. K-1) of a test video (SPEC 3.5).

  Args:
    video: the test video.
    t: number of input frames per window.
    k: number of shots; 0 gives an empty batch (the un-adapted model).

  Returns:
    float32 [K, T+1, H, W, 3] in [-1, 1].
  """
  if k < 0:
    raise ConfigError(f"k must be >= 0, got {k}")
  if k > 0 and video.num_frames < k + t:
    raise DataError(f"video {video.name} has {video.num_frames} frames, too short for K = {k} shots of "
                    f"t+1 = {t + 1} frames (needs K + t = {k + t})")
  return gather_windows(video.frames, np.arange(k), t)  # [K, T+1, H, W, 3]


def disjoint_starts(rng: np.random.Generator, num_frames: int, length: int, m: int) -> np.ndarray:
  """Draws m non-overlapping windows of ``length`` frames uniformly among all such placements.

  With F = num_frames - m * length free frames, sorted distinct c_0 < ... < c_{m-1} from range(F + m)
  give starts c_i + i * (length - 1): a bijection onto non-overlapping placements.

  Returns:
    int64 [m] sorted window starts.
  """
  free = num_frames - m * length
  if free < 0:
    raise ValueError(f"{m} disjoint windows of {length} frames do not fit in {num_frames} frames")
  c = np.sort(rng.choice(free + m, size=m, replace=False))
  return c + np.arange(m) * (length - 1)


class EpisodeSampler:
  """Samples meta-batches of single-scene episodes from a split.

  Attributes:
    scene_names: sorted scenes of the split; ``scene`` outputs index into it (as WindowSource.scene_ids).
    scenes: the scenes episodes are drawn from (a subset of scene_names).
    eligible: scene -> indices of the videos long enough for K + Q disjoint windows.
  """

  def __init__(self, split: Split, t: int = 4, k_support: int = 1, n_query: int = 1, seed: int = 0,
               scenes: list[str] | None = None, scene_weights: dict[str, float] | None = None):
    """Builds the sampler.

    Args:
      split: videos to sample from (training videos of the meta-training data set).
      t: number of input frames per window.
      k_support: K, support windows per episode (the inner update's data).
      n_query: Q, query windows per episode (the outer loss's data).
      seed: sampling seed.
      scenes: scenes to sample from (default: all scenes of the split).
      scene_weights: scene -> relative probability of drawing it (``multisource.MultiSplit.scene_weights``);
        None: scenes as balanced as possible (each meta-batch a fresh permutation).
    """
    if t < 1 or k_support < 1 or n_query < 1:
      raise ConfigError(f"need t, k_support, n_query >= 1, got {t}, {k_support}, {n_query}")
    self.split = split
    self.t = t
    self.k_support = k_support
    self.n_query = n_query
    self.seed = seed
    self.frame_shape = check_frame_shapes(split)
    self.scene_names = split.scenes
    self.scenes = sorted(scenes) if scenes is not None else list(self.scene_names)
    unknown = sorted(set(self.scenes) - set(self.scene_names))
    if unknown or not self.scenes:
      raise DataError(f"scenes {unknown} not in {split.dataset}/{split.split} "
                      f"(its scenes: {', '.join(self.scene_names)})")
    need = (k_support + n_query) * (t + 1)
    self.eligible: dict[str, np.ndarray] = {}
    for scene in self.scenes:
      idx = [i for i, v in enumerate(split.videos) if v.scene == scene]
      ok = [i for i in idx if split.videos[i].num_frames >= need]
      if not ok:
        most = max(split.videos[i].num_frames for i in idx) // (t + 1)
        raise DataError(f"scene {scene} of {split.dataset}/{split.split}: an episode needs K = {k_support} "
                        f"support + {n_query} query disjoint windows of t+1 = {t + 1} frames, but its longest "
                        f"video allows only {most} disjoint windows")
      self.eligible[scene] = np.asarray(ok, np.int64)
    self._scene_to_id = {s: i for i, s in enumerate(self.scene_names)}
    self.scene_probs = None
    if scene_weights is not None:
      w = np.asarray([float(scene_weights.get(s, 0.0)) for s in self.scenes], np.float64)
      if not np.all(w >= 0) or w.sum() <= 0:
        raise DataError(f"scene weights {scene_weights} give no positive weight to the scenes {self.scenes}")
      self.scene_probs = w / w.sum()

  def _draw_scenes(self, rng: np.random.Generator, num_episodes: int) -> list[str]:
    if self.scene_probs is not None:  # Weighted sources: independent draws.
      return [self.scenes[i] for i in rng.choice(len(self.scenes), size=num_episodes, p=self.scene_probs)]
    # Without replacement within a meta-batch; beyond len(scenes) episodes, chain fresh permutations so that
    # scenes stay as balanced as possible.
    out: list[str] = []
    while len(out) < num_episodes:
      out.extend(self.scenes[i] for i in rng.permutation(len(self.scenes)))
    return out[:num_episodes]

  def sample_indices(self, step: int, num_episodes: int) -> dict[str, np.ndarray]:
    """Which windows the episodes of ``step`` hold, deterministic from ``default_rng([seed, step])``.

    Returns:
      dict with scene int32 [E], video int32 [E] (index into split.videos), support_start int32 [E, K] and
      query_start int32 [E, Q] (window = frames start .. start+t of that video).
    """
    rng = np.random.default_rng([self.seed, step])
    k, q, length = self.k_support, self.n_query, self.t + 1
    scene = np.empty(num_episodes, np.int32)
    video = np.empty(num_episodes, np.int32)
    support = np.empty((num_episodes, k), np.int32)
    query = np.empty((num_episodes, q), np.int32)
    for e, name in enumerate(self._draw_scenes(rng, num_episodes)):
      vi = int(rng.choice(self.eligible[name]))
      starts = disjoint_starts(rng, self.split.videos[vi].num_frames, length, k + q)
      # Random roles, so query windows are not always later in the video than support windows.
      starts = starts[rng.permutation(k + q)]
      scene[e], video[e] = self._scene_to_id[name], vi
      support[e], query[e] = np.sort(starts[:k]), np.sort(starts[k:])
    return {"scene": scene, "video": video, "support_start": support, "query_start": query}

  def sample(self, step: int, num_episodes: int) -> dict[str, np.ndarray]:
    """A meta-batch of episodes, deterministic from (seed, step).

    Args:
      step: meta-training step.
      num_episodes: E, episodes per meta-batch (paper: 10).

    Returns:
      dict with support float32 [E, K, T+1, H, W, 3], query float32 [E, Q, T+1, H, W, 3] (both in [-1, 1])
      and scene int32 [E].
    """
    idx = self.sample_indices(step, num_episodes)
    k, q, t = self.k_support, self.n_query, self.t
    support = np.empty((num_episodes, k, t + 1) + self.frame_shape, np.float32)  # [E, K, T+1, H, W, 3]
    query = np.empty((num_episodes, q, t + 1) + self.frame_shape, np.float32)  # [E, Q, T+1, H, W, 3]
    for e in range(num_episodes):
      frames = self.split.videos[int(idx["video"][e])].frames
      gather_windows(frames, idx["support_start"][e], t, out=support[e])
      gather_windows(frames, idx["query_start"][e], t, out=query[e])
    return {
        "support": support,
        "query": query,
        "scene": idx["scene"],
    }


class ShotsSampler:
  """Meta-batches whose support size K is drawn per meta-batch from ``shots`` (meta-training that matches testing).

  Each meta-batch has one K (so it stacks), drawn uniformly from ``shots`` by ``default_rng([seed, step, 1])``;
  its episodes come from the `EpisodeSampler` of that K (same seed), so resuming reproduces the same batches.
  Every source scene must hold an episode of max(shots) support + Q query windows.

  Attributes:
    shots: the support sizes, sorted.
    samplers: K -> EpisodeSampler.
    scene_names: as `EpisodeSampler.scene_names`.
  """

  def __init__(self, split: Split, t: int = 4, shots=(1,), n_query: int = 1, seed: int = 0,
               scenes: list[str] | None = None, scene_weights: dict[str, float] | None = None):
    self.shots = sorted({int(k) for k in shots})
    if not self.shots or self.shots[0] < 1:
      raise ValueError(f"meta-training shots must be >= 1, got {tuple(shots)}")
    self.seed = seed
    # The largest K first: its eligibility error is the one that names a too-short scene.
    self.samplers = {k: EpisodeSampler(split, t=t, k_support=k, n_query=n_query, seed=seed, scenes=scenes,
                                       scene_weights=scene_weights) for k in reversed(self.shots)}
    self.scene_names = self.samplers[self.shots[0]].scene_names

  def k_for_step(self, step: int) -> int:
    return self.shots[int(np.random.default_rng([self.seed, step, 1]).integers(len(self.shots)))]

  def sample(self, step: int, num_episodes: int) -> dict[str, np.ndarray]:
    """A meta-batch of `EpisodeSampler.sample` with K = ``k_for_step(step)``."""
    return self.samplers[self.k_for_step(step)].sample(step, num_episodes)


def make_sampler(split: Split, *, t: int, k_support, n_query: int, seed: int = 0,
                 scene_weights: dict[str, float] | None = None):
  """An `EpisodeSampler` for one K (an int), a `ShotsSampler` for several (a tuple: K drawn per meta-batch)."""
  if isinstance(k_support, (tuple, list)):
    return ShotsSampler(split, t=t, shots=k_support, n_query=n_query, seed=seed, scene_weights=scene_weights)
  return EpisodeSampler(split, t=t, k_support=int(k_support), n_query=n_query, seed=seed, scene_weights=scene_weights)
