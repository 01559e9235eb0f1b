"""TFDS builder for ShanghaiTech Campus (Liu, Luo, Lian, Gao, CVPR 2018), 13 scenes.

Reads the original archive through ``raw_layouts`` (layout "shanghaitech"):
``training/videos/<scene>_<nnn>.avi``, ``testing/frames/<scene>_<nnnn>/NNN.jpg``,
``testing/test_frame_mask/<video>.npy`` frame labels and, where present, ``testing/test_pixel_mask/<video>.npy``
pixel masks. The scene id is the video-name prefix (``01_001`` -> ``01``).
"""

from __future__ import annotations

import pathlib

from jaxvad.data.raw_layouts import discover_split
from jaxvad.data.tfds_builders.base import SPLIT_DIRS, RawVideo, VadBuilder, find_root, raw_videos


class ShanghaitechCampus(VadBuilder):
  """ShanghaiTech Campus: 330 training videos (.avi) and 107 test videos (frames), 480x856 RGB, 13 scenes."""

  HOMEPAGE = "https://svip-lab.github.io/dataset/campus_dataset.html"
  CITATION = """@inproceedings{liu2018ano_pred, title={Future Frame Prediction for Anomaly Detection -- A New
  Baseline}, author={Liu, W. and Luo, W. and Lian, D. and Gao, S.}, booktitle={CVPR}, year={2018}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """Download `shanghaitech.tar.gz` from
https://svip-lab.github.io/dataset/campus_dataset.html and unpack it into the manual directory, so that
`shanghaitech/training/videos/01_001.avi`, `shanghaitech/testing/frames/01_0014/000.jpg` and
`shanghaitech/testing/test_frame_mask/01_0014.npy` exist."""

  def _find_data_root(self, manual_dir: pathlib.Path) -> pathlib.Path:
    return find_root(manual_dir, ("shanghaitech", "ShanghaiTech"),
                     lambda p: (p / "training").is_dir() and (p / "testing").is_dir(), "ShanghaiTech Campus")

  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    return raw_videos(discover_split(root, SPLIT_DIRS[split], "shanghaitech"))
