"""TFDS builder for CUHK Avenue (Lu, Shi, Jia, ICCV 2013).

Reads the original archive: ``Avenue Dataset/{training,testing}_videos/NN.avi`` and the per-pixel ground
truth ``testing_label_mask/<i>_label.mat`` (variable ``volLabel``, from ``ground_truth_demo.zip``).
A frame is abnormal where any pixel of its mask is set (``labels.load_frame_labels``).
"""

from __future__ import annotations

import pathlib

import numpy as np
import scipy.io

from jaxvad.data.errors import DataError
from jaxvad.data.labels import load_frame_labels
from jaxvad.data.layout import VIDEO_EXTS, VideoEntry, natural_key
from jaxvad.data.tfds_builders.base import RawVideo, VadBuilder, find_root, resize_masks


def _videos(folder: pathlib.Path) -> list[VideoEntry]:
  files = sorted((f for f in folder.iterdir() if f.suffix.lower() in VIDEO_EXTS and not f.name.startswith(".")),
                 key=lambda f: natural_key(f.name))
  if not files:
    raise DataError(f"no video files in {folder}")
  return [VideoEntry(f.stem, "0", f, "video") for f in files]


def _mask_loader(path: pathlib.Path):
  def load(size):
    vol = scipy.io.loadmat(str(path))["volLabel"].ravel()
    return resize_masks(np.stack([(np.asarray(m) != 0).astype(np.uint8) * 255 for m in vol]), size)
  return load


class CuhkAvenue(VadBuilder):
  """CUHK Avenue: 16 training and 21 test videos, 360x640 RGB, one scene; pixel masks for every test frame."""

  HOMEPAGE = "http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html"
  CITATION = """@inproceedings{lu2013abnormal, title={Abnormal Event Detection at 150 FPS in MATLAB},
  author={Lu, Cewu and Shi, Jianping and Jia, Jiaya}, booktitle={ICCV}, year={2013}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """Download `Avenue_Dataset.zip` and `ground_truth_demo.zip` from
http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html and unzip both into the manual directory,
so that `Avenue Dataset/training_videos/01.avi`, `Avenue Dataset/testing_videos/01.avi` and
`ground_truth_demo/testing_label_mask/1_label.mat` exist (the mask folder may also sit inside `Avenue Dataset`)."""

  def _find_data_root(self, manual_dir: pathlib.Path) -> pathlib.Path:
    return find_root(manual_dir, ("Avenue Dataset", "Avenue_Dataset", "avenue"),
                     lambda p: (p / "training_videos").is_dir(), "CUHK Avenue (training_videos/)")

  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    entries = _videos(root / ("training_videos" if split == "train" else "testing_videos"))
    if split == "train":
      return [RawVideo(e) for e in entries]
    mask_dirs = [b / sub for b in (root, root.parent) for sub in ("testing_label_mask",
                 "ground_truth_demo/testing_label_mask") if (b / sub).is_dir()]
    if not mask_dirs:
      raise DataError(f"no testing_label_mask/ folder near {root} (unzip ground_truth_demo.zip there)")
    mask_dir = mask_dirs[0]
    labels = load_frame_labels(mask_dir)
    if len(labels) != len(entries):
      raise DataError(f"video count mismatch: {len(labels)} label files in {mask_dir} but {len(entries)} test videos")
    return [RawVideo(e, lab, _mask_loader(mask_dir / f"{int(e.name)}_label.mat")) for e, lab in zip(entries, labels)]
