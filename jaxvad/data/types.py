"""In-memory video containers shared by the loaders, the synthetic generator and evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class VideoData:
  """One video, decoded and resized.

  Attributes:
    name: video id, unique within a split (e.g. "01", "01_0014").
    scene: camera-view id used for episode sampling (SPEC 1.3).
    frames: uint8 [N, H, W, 3] RGB frames (may be a read-only np.memmap).
    labels: int8 [N] frame labels, 1 = abnormal (test videos), or None.
    masks: uint8 [N, H, W] pixel masks, nonzero = abnormal, or None.
  """

  name: str
  scene: str
  frames: np.ndarray
  labels: np.ndarray | None = None
  masks: np.ndarray | None = None

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


@dataclasses.dataclass
class Split:
  """All videos of one split ("training" or "testing") of one data set, in sorted order."""

  dataset: str
  split: str
  videos: list[VideoData]

  @property
  def num_frames(self) -> int:
    return sum(v.num_frames for v in self.videos)

  @property
  def scenes(self) -> list[str]:
    return sorted({v.scene for v in self.videos})

  @property
  def labels(self) -> np.ndarray | None:
    """Concatenated frame labels of all videos, or None if any video has none."""
    if any(v.labels is None for v in self.videos):
      return None
    return np.concatenate([v.labels for v in self.videos]).astype(np.int8)
