"""Window data source: t+1 consecutive frames of one video, batched and shuffled by step (SPEC 1.3).

A window is t input frames plus the target frame t+1. Batches are float32 ``[B, T+1, H, W, C]`` in [-1, 1].
Shuffling is a pure function of ``(seed, step)`` so that a resumed run reads exactly the batches the
uninterrupted run would have read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from jaxvad.data.errors import DataError
from jaxvad.data.types import Split, VideoData
from jaxvad.errors import ConfigError


def scale_frames(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
  """Maps uint8 frames to float32 in [-1, 1] as ``x / 127.5 - 1`` in float32 (0 -> -1, 255 -> 1).

  Args:
    frames: uint8 array of any shape (array or memmap slice).
    out: optional float32 array of the same shape to write into.

  Returns:
    float32 array of the same shape.
  """
  if out is None:
    out = np.empty(frames.shape, np.float32)
  np.divide(frames, np.float32(127.5), out=out, dtype=np.float32)
  np.subtract(out, np.float32(1.0), out=out)
  return out


def gather_windows(frames: np.ndarray, starts: Sequence[int] | np.ndarray, t: int,
                   out: np.ndarray | None = None) -> np.ndarray:
  """Reads windows ``frames[s:s+t+1]`` of one video, scaled to [-1, 1].

  Each window is one contiguous slice (a sequential read on a memmap) converted straight into its row of
  the float32 output while it is in cache: measured on 256x256 batches of 32 this is ~25% faster than
  gathering a uint8 batch and converting it at once, and ~1.5x faster to gather than fancy indexing.

  Args:
    frames: uint8 [N, H, W, 3] frames of one video (array or memmap).
    starts: first frame index of each window.
    t: number of input frames; windows hold t+1 frames.
    out: optional float32 [len(starts), T+1, H, W, 3] buffer to fill.

  Returns:
    float32 [len(starts), T+1, H, W, 3].
  """
  if out is None:
    out = np.empty((len(starts), t + 1) + tuple(frames.shape[1:]), np.float32)
  for j, s in enumerate(starts):
    scale_frames(frames[int(s):int(s) + t + 1], out=out[j])  # [T+1, H, W, 3]
  return out


def check_frame_shapes(split: Split) -> tuple[int, ...]:
  """Returns the common ``(H, W, 3)`` frame shape of a split; DataError if videos disagree."""
  if not split.videos:
    raise DataError(f"{split.dataset}/{split.split} has no videos")
  shape = tuple(split.videos[0].frames.shape[1:])
  for v in split.videos:
    if tuple(v.frames.shape[1:]) != shape or v.frames.ndim != 4 or v.frames.shape[-1] != 3:
      raise DataError(f"video {v.name} of {split.dataset}/{split.split} has frames of shape "
                      f"{tuple(v.frames.shape)}, expected [N, {', '.join(map(str, shape))}] like video "
                      f"{split.videos[0].name}")
  return shape


class _Failure:
  """Carries an exception from the prefetch thread to the consumer."""

  def __init__(self, exc: BaseException):
    self.exc = exc


class WindowSource:
  """All windows of a split, addressable by a flat window index.

  Attributes:
    split: the underlying split.
    t: number of input frames (a window holds t+1 frames).
    stride: distance between the starts of consecutive windows of one video.
    video_index: int32 [W] video of each window (index into ``split.videos``).
    start: int32 [W] first frame of each window; window i = frames start[i] .. start[i]+t.
    scene_names: sorted scene strings of the split.
    scene_ids: int32 [W] scene of each window, an index into ``scene_names``.
    frame_shape: ``(H, W, 3)``.
  """

  def __init__(self, split: Split, t: int = 4, stride: int = 1):
    if t < 1 or stride < 1:
      raise ConfigError(f"need t >= 1 and stride >= 1, got t = {t}, stride = {stride}")
    self.split = split
    self.t = t
    self.stride = stride
    self.frame_shape = check_frame_shapes(split)
    self.scene_names = split.scenes
    scene_to_id = {s: i for i, s in enumerate(self.scene_names)}
    video_index, start, scene_ids = [], [], []
    for vi, v in enumerate(split.videos):
      if v.num_frames < t + 1:
        raise DataError(f"video {v.name} of {split.dataset}/{split.split} has {v.num_frames} frames, "
                        f"shorter than a window of t+1 = {t + 1}")
      starts = np.arange(0, v.num_frames - t, stride, dtype=np.int32)
      video_index.append(np.full(len(starts), vi, np.int32))
      start.append(starts)
      scene_ids.append(np.full(len(starts), scene_to_id[v.scene], np.int32))
    self.video_index = np.concatenate(video_index)  # [W]
    self.start = np.concatenate(start)  # [W]
    self.scene_ids = np.concatenate(scene_ids)  # [W]
    self._perm_cache: tuple[tuple[int, int], np.ndarray] | None = None

  def __len__(self) -> int:
    return int(self.start.shape[0])

  @property
  def name(self) -> str:
    return f"{self.split.dataset}/{self.split.split}"

  def video(self, i: int) -> VideoData:
    """The video that window i belongs to."""
    return self.split.videos[int(self.video_index[i])]

  def window(self, i: int) -> np.ndarray:
    """Window i as uint8 [T+1, H, W, 3] (the last frame is the prediction target)."""
    s = int(self.start[i])
    return np.asarray(self.video(i).frames[s:s + self.t + 1])

  def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Gathers windows into a batch.

    Args:
      indices: window indices, length B.

    Returns:
      dict with frames float32 [B, T+1, H, W, 3] in [-1, 1], scene int32 [B], video int32 [B] and
      start int32 [B].
    """
    indices = np.asarray(indices, np.int64)
    n = len(self)
    if indices.size and (indices.min() < -n or indices.max() >= n):
      raise IndexError(f"window index out of range for {self.name} with {n} windows")
    videos = self.video_index[indices]  # [B]
    starts = self.start[indices]  # [B]
    frames = np.empty((len(indices), self.t + 1) + self.frame_shape, np.float32)  # [B, T+1, H, W, 3]
    for r in range(len(indices)):  # see gather_windows for why per-window slices
      s = int(starts[r])
      scale_frames(self.split.videos[videos[r]].frames[s:s + self.t + 1], out=frames[r])
    return {"frames": frames, "scene": self.scene_ids[indices], "video": videos, "start": starts}

  def steps_per_epoch(self, batch_size: int) -> int:
    """Full batches per epoch (the remainder is dropped)."""
    if batch_size < 1:
      raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > len(self):
      raise DataError(f"batch size {batch_size} is larger than the {len(self)} windows of {self.name} "
                      f"(t = {self.t}, stride = {self.stride})")
    return len(self) // batch_size

  def _permutation(self, seed: int, epoch: int) -> np.ndarray:
    cache = self._perm_cache  # one read: the tuple is replaced atomically, safe across threads
    if cache is not None and cache[0] == (seed, epoch):
      return cache[1]
    perm = np.random.default_rng([seed, epoch]).permutation(len(self))
    self._perm_cache = ((seed, epoch), perm)
    return perm

  def batch_indices(self, step: int, batch_size: int, seed: int, shuffle: bool = True,
                    rows: slice | None = None) -> np.ndarray:
    """Window indices of batch ``step``: a pure function of (step, batch_size, seed).

    Epoch e = step // steps_per_epoch uses the permutation ``default_rng([seed, e])``; batch
    ``step % steps_per_epoch`` is a slice of it, so every epoch visits each window at most once.

    Args:
      step: the training step.
      batch_size: B, windows per (global) batch.
      seed: shuffle seed.
      shuffle: shuffle windows per epoch.
      rows: only these rows of the batch (a process's share in multi-host training); default all.

    Returns:
      int64 [B] window indices, or [len(rows)] with ``rows``.
    """
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    spe = self.steps_per_epoch(batch_size)
    epoch, k = divmod(step, spe)
    order = self._permutation(seed, epoch) if shuffle else np.arange(len(self))
    indices = order[k * batch_size:(k + 1) * batch_size]  # [B]
    return indices if rows is None else indices[rows]

  def batch_at(self, step: int, batch_size: int, seed: int, shuffle: bool = True,
               rows: slice | None = None) -> dict[str, np.ndarray]:
    """The batch read at ``step``: ``get_batch(batch_indices(step, ...))``, optionally only ``rows`` of it."""
    return self.get_batch(self.batch_indices(step, batch_size, seed, shuffle, rows))

  def iterate(self, start_step: int, num_steps: int | None, batch_size: int, seed: int,
              shuffle: bool = True, prefetch: int = 2,
              rows: slice | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields ``(step, batch_at(step))`` for steps start_step .. start_step+num_steps-1.

    A background thread prepares up to ``prefetch`` batches ahead, overlapping the host-side gather with
    the consumer's device step (numpy releases the GIL in large copies and arithmetic).
    Errors in the thread are re-raised here; closing the generator stops the thread.

    Args:
      start_step: first step (resume from a checkpoint's step).
      num_steps: number of batches, or None for no end.
      batch_size: windows per batch.
      seed: shuffle seed.
      shuffle: shuffle windows per epoch.
      prefetch: batches prepared ahead; 0 reads synchronously.
      rows: read only these rows of every batch (this process's share in multi-host training).
    """
    self.steps_per_epoch(batch_size)  # fail early, in the caller's thread
    end = None if num_steps is None else start_step + num_steps

    def steps():
      step = start_step
      while end is None or step < end:
        yield step
        step += 1

    if prefetch <= 0:
      for step in steps():
        yield step, self.batch_at(step, batch_size, seed, shuffle, rows)
      return

    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
      while not stop.is_set():
        try:
          q.put(item, timeout=0.05)
          return True
        except queue.Full:
          continue
      return False

    def produce():
      try:
        for step in steps():
          if not put((step, self.batch_at(step, batch_size, seed, shuffle, rows))):
            return
        put(None)
      except BaseException as e:  # pylint: disable=broad-except
        put(_Failure(e))

    thread = threading.Thread(target=produce, name=f"WindowSource-prefetch-{self.name}", daemon=True)
    thread.start()
    try:
      while True:
        item = q.get()
        if item is None:
          return
        if isinstance(item, _Failure):
          raise item.exc
        yield item
    finally:
      stop.set()
      thread.join()
