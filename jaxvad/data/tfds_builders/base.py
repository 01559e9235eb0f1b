"""Shared machinery of the jaxvad TFDS builders: one example per frame, temporal order kept.

Every builder reads the archives a user downloaded by hand (``MANUAL_DOWNLOAD_INSTRUCTIONS``) and writes
``array_record`` files that ``tfds.data_source`` reads without TensorFlow. Examples hold:

  image: uint8 [H, W, 3] PNG (lossless), decoded the way ``jaxvad prepare`` decodes (PIL/PyAV, grayscale
    replicated to RGB) so that the TFDS path and the frame cache give identical windows.
  video, scene: str ids (scene as in SPEC 1.3).  frame: int32 position of the frame in its video (0-based).
  label: int8 frame label, 1 = abnormal; -1 for frames without labels (training).
  mask, has_mask: uint8 [H, W, 1] pixel mask (0 = normal) and whether the video has masks (data sets with
    pixel masks only; the mask is all zeros where ``has_mask`` is false).

Images are handed to TFDS as PIL images: TFDS encodes those with PIL, while numpy arrays would need TensorFlow.
``disable_shuffling=True`` keeps the generation order (videos sorted by name, frames in order).
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxvad.data import decode
from jaxvad.data.errors import DataError
from jaxvad.data.labels import load_frame_labels
from jaxvad.data.layout import VideoEntry
from jaxvad.data.raw_layouts import MaskLoader, RawSplit

SPLIT_DIRS = {"train": "training", "test": "testing"}


@dataclasses.dataclass(eq=False)
class VadConfig(tfds.core.BuilderConfig):
  """A builder config: the stored frame size and, for tests and quick looks, a subset of videos.

  Attributes:
    size: (H, W) to resize frames to while building (PIL bilinear, as ``jaxvad prepare``), or None to keep
      the original resolution (the loader then resizes at read time, with the same result).
    videos: optional ``{"train": names, "test": names}`` subsets; a missing split keeps all its videos.
  """

  size: tuple[int, int] | None = None
  videos: dict | None = None


DEFAULT_CONFIGS = [
    VadConfig(name="256x256", size=(256, 256), description="frames resized to 256x256 (the papers' size)"),
    VadConfig(name="original", size=None, description="frames at their original resolution"),
]


@dataclasses.dataclass
class RawVideo:
  """One video of a raw archive, ready to be turned into frame examples.

  Attributes:
    entry: what to decode (``layout.VideoEntry``: a frame folder or a video file).
    labels: int8 [N] frame labels, or None (training).
    masks: function (H, W) or None -> uint8 [N, H, W] pixel masks at that size (None: native), or None.
  """

  entry: VideoEntry
  labels: np.ndarray | None = None
  masks: MaskLoader | None = None


def native_size(entry: VideoEntry) -> tuple[int, int]:
  """(H, W) of a video's first frame, without decoding the whole video."""
  if entry.kind == "frames":
    with Image.open(entry.frames[0]) as img:
      return img.size[1], img.size[0]
  av = decode._import_av()  # pylint: disable=protected-access
  with av.open(str(entry.source)) as container:
    ctx = container.streams.video[0].codec_context
    return int(ctx.height), int(ctx.width)


def raw_videos(raw: RawSplit, labels: pathlib.Path | None = None) -> list[RawVideo]:
  """The ``RawVideo``s of a split found by ``raw_layouts.discover_split``, with labels loaded and mask loaders.

  Args:
    raw: the split's entries, label source and mask loaders.
    labels: a label source that overrides ``raw.labels``.

  Returns:
    One ``RawVideo`` per entry; label counts of raw videos are checked later against the decoded frames.
  """
  source = labels if labels is not None else raw.labels
  if source is None:
    return [RawVideo(e, None, raw.masks.get(e.name)) for e in raw.entries]
  names = [e.name for e in raw.entries]
  lengths = [len(e.frames) for e in raw.entries] if all(e.kind == "frames" for e in raw.entries) else None
  per_video = load_frame_labels(source, names, lengths)
  if len(per_video) != len(names):
    raise DataError(f"video count mismatch: {len(per_video)} videos in the labels {source} but {len(names)} videos")
  return [RawVideo(e, lab, raw.masks.get(e.name)) for e, lab in zip(raw.entries, per_video)]


def find_root(manual_dir: pathlib.Path, candidates: Sequence[str], marker: Callable[[pathlib.Path], bool],
              what: str) -> pathlib.Path:
  """The first of ``manual_dir/<candidate>`` (or ``manual_dir`` itself) for which ``marker`` holds."""
  for rel in ("", *candidates):
    path = manual_dir / rel if rel else manual_dir
    if path.is_dir() and marker(path):
      return path
  raise DataError(f"no {what} found in the manual directory {manual_dir} (looked in "
                  f"{', '.join(['.', *candidates])}); see the download instructions")


class VadBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: subclasses define ``_raw_videos(root, split)``, ``_find_data_root`` and ``HAS_MASKS``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: one example per frame, array_record, temporal order kept."}
  BUILDER_CONFIGS = DEFAULT_CONFIGS
  HAS_MASKS = True
  SPLITS = ("train", "test")
  CITATION = ""
  HOMEPAGE = ""

  def __init__(self, **kwargs):
    # array_record: random access for tfds.data_source, and writing it needs no TensorFlow (tfrecord does).
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "video": tfds.features.Text(),
        "scene": tfds.features.Text(),
        "frame": np.int32,
        "label": np.int8,
    }
    if self.HAS_MASKS:
      features["mask"] = tfds.features.Image(shape=(None, None, 1), encoding_format="png")
      features["has_mask"] = np.bool_
    # DatasetInfo directly (not dataset_info_from_configs, which wants a metadata folder beside the code).
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=tfds.features.FeaturesDict(features),
                                 homepage=self.HOMEPAGE, citation=self.CITATION, disable_shuffling=True)

  @abc.abstractmethod
  def _find_data_root(self, manual_dir: pathlib.Path) -> pathlib.Path:
    """The data set's root inside the manual download folder (each builder knows its archive)."""

  @abc.abstractmethod
  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    """The videos of ``split`` ("train" / "test") with their labels and mask loaders."""

  def _split_generators(self, dl_manager):
    root = self._find_data_root(pathlib.Path(dl_manager.manual_dir))
    return {split: self._generate_examples(root, split) for split in self.SPLITS}

  def _selected(self, videos: list[RawVideo], split: str) -> list[RawVideo]:
    wanted = (self.builder_config.videos or {}).get(split)
    if wanted is None:
      return videos
    names = {v.entry.name for v in videos}
    unknown = sorted(set(wanted) - names)
    if unknown:
      raise DataError(f"{self.name}/{split}: no video {unknown}; videos: {sorted(names)[:10]}...")
    return [v for v in videos if v.entry.name in set(wanted)]

  def _generate_examples(self, root: pathlib.Path, split: str) -> Iterator[tuple[str, dict]]:
    size = self.builder_config.size
    for raw in self._selected(self._raw_videos(root, split), split):
      yield from video_examples(raw, tuple(size) if size else None, self.HAS_MASKS)


def video_examples(raw: RawVideo, size: tuple[int, int] | None, with_masks: bool) -> Iterator[tuple[str, dict]]:
  """The frame examples of one video, in order; checks label and mask counts against the decoded frames."""
  entry = raw.entry
  out_size = size or native_size(entry)
  masks = raw.masks(out_size) if (with_masks and raw.masks is not None) else None
  zero = np.zeros((*out_size, 1), np.uint8)
  n = 0
  for i, frame in enumerate(decode.iter_frames(entry, out_size)):
    n = i + 1
    if raw.labels is not None and i >= raw.labels.shape[0]:
      raise DataError(f"label count mismatch for video {entry.name}: {raw.labels.shape[0]} labels but more frames")
    ex = {"image": Image.fromarray(frame), "video": entry.name, "scene": entry.scene, "frame": i,
          "label": int(raw.labels[i]) if raw.labels is not None else -1}
    if with_masks:
      if masks is not None and i >= masks.shape[0]:
        raise DataError(f"mask count mismatch for video {entry.name}: {masks.shape[0]} masks but more frames")
      m = masks[i] if masks is not None else zero[..., 0]
      ex["mask"] = Image.fromarray(np.asarray(m, np.uint8))
      ex["has_mask"] = masks is not None
    yield f"{entry.name}/{i:07d}", ex
  if raw.labels is not None and raw.labels.shape[0] != n:
    raise DataError(f"label count mismatch for video {entry.name}: {raw.labels.shape[0]} labels but {n} frames")
  if masks is not None and masks.shape[0] != n:
    raise DataError(f"mask count mismatch for video {entry.name}: {masks.shape[0]} masks but {n} frames")
