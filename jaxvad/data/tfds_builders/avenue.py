"""TFDS builder for CUHK Avenue (Lu, Shi, Jia, ICCV 2013).

Reads the original archive through ``raw_layouts`` (layout "avenue"): ``Avenue Dataset/{training,testing}_videos/
NN.avi`` and the per-pixel ground truth ``testing_label_mask/<i>_label.mat`` (variable ``volLabel``, from
``ground_truth_demo.zip``). A frame is abnormal where any pixel of its mask is set.
"""

from __future__ import annotations

import pathlib

from jaxvad.data.raw_layouts import discover_split
from jaxvad.data.tfds_builders.base import SPLIT_DIRS, RawVideo, VadBuilder, find_root, raw_videos


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
    return raw_videos(discover_split(root, SPLIT_DIRS[split], "avenue"))
