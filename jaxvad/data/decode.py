"""Decoding of image frames (PIL) and raw videos (PyAV) to resized uint8 RGB (SPEC 1.1, 1.3).

Grayscale data (UCSD) is replicated to 3 channels by ``convert("RGB")``. Resizing uses PIL's bilinear filter.
A frame whose native size differs from its video's first frame is resized like the others, with one warning per
video naming the file.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

from jaxvad.data.errors import DataError
from jaxvad.data.layout import VideoEntry

log = logging.getLogger(__name__)


def _resize_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
  """PIL image -> uint8 [H, W, 3] at size (H, W)."""
  img = img.convert("RGB")
  h, w = size
  if img.size != (w, h):
    img = img.resize((w, h), Image.BILINEAR)
  return np.asarray(img, np.uint8)


def _read_image(path: str | pathlib.Path, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
  """(uint8 [H, W, 3] resized, native (height, width)) of one image; DataError if unreadable."""
  try:
    with Image.open(path) as img:
      img.load()
      return _resize_rgb(img, size), (img.size[1], img.size[0])
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"cannot read image {path}: {e}".splitlines()[0]) from None


def read_image(path: str | pathlib.Path, size: tuple[int, int]) -> np.ndarray:
  """Reads one image as RGB and resizes it.

  Args:
    path: image file.
    size: (H, W) output size.

  Returns:
    uint8 [H, W, 3].

  Raises:
    DataError: the file is missing, corrupt or truncated.
  """
  return _read_image(path, size)[0]


def _import_av():
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("decoding video files needs PyAV: install jaxvad[video] (pip install 'jaxvad[video]')") from None
  return av


def iter_video(path: str | pathlib.Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
  """Decodes every frame of a video file with PyAV, resized.

  Args:
    path: an .avi/.mp4/.mkv/.mov file.
    size: (H, W) output size.

  Yields:
    uint8 [H, W, 3] frames in order.

  Raises:
    DataError: PyAV is missing, or the file cannot be opened or decoded.
  """
  av = _import_av()
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise DataError(f"no video stream in {path}")
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      for frame in container.decode(stream):
        yield _resize_rgb(frame.to_image(), size)
  except av.error.FFmpegError as e:
    raise DataError(f"cannot decode video {path}: {e}".splitlines()[0]) from None


def iter_frames(entry: VideoEntry, size: tuple[int, int]) -> Iterator[np.ndarray]:
  """Yields the resized RGB frames of a discovered video, one at a time (bounded memory).

  Args:
    entry: from ``layout.discover``.
    size: (H, W) output size.

  Yields:
    uint8 [H, W, 3] frames in temporal order.
  """
  if entry.kind == "video":
    yield from iter_video(entry.source, size)
    return
  first, warned = None, False
  for f in entry.frames:
    frame, native = _read_image(f, size)
    if first is None:
      first = native
    elif native != first and not warned:
      warned = True  # Once per video: a whole folder of odd frames is one problem.
      log.warning("frame %s is %dx%d (HxW) but the first frame of %s is %dx%d; resized to %dx%d like the others "
                  "(check that it belongs to this video)", f, *native, entry.source, *first, *size)
    yield frame


def read_frames(entry: VideoEntry, size: tuple[int, int] = (256, 256)) -> np.ndarray:
  """Decodes and resizes all frames of a discovered video.

  Args:
    entry: from ``layout.discover`` (kind "frames" read with PIL, kind "video" with PyAV).
    size: (H, W) output size.

  Returns:
    uint8 [N, H, W, 3].

  Raises:
    DataError: an unreadable image (named), an undecodable video, or a video with no frames.
  """
  frames = list(iter_frames(entry, size))
  if not frames:
    raise DataError(f"no frames decoded from {entry.source}")
  return np.stack(frames)
