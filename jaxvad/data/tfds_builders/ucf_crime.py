"""TFDS builder for the normal videos of UCF-Crime (Sultani, Chen, Shah, CVPR 2018), for meta-training.

Only the training split of normal videos (``Normal_Videos*.mp4`` outside any ``Testing*`` folder, found by
``raw_layouts`` layout "ucf_crime") is built: each video is its own scene (SPEC 1.3), and no labels or masks
are stored.
"""

from __future__ import annotations

import pathlib

from jaxvad.data.raw_layouts import discover_split
from jaxvad.data.tfds_builders.base import RawVideo, VadBuilder, raw_videos


class UcfCrimeNormal(VadBuilder):
  """UCF-Crime normal training videos (800 in Training_Normal_Videos_Anomaly), 240x320 RGB, one scene each."""

  HAS_MASKS = False
  SPLITS = ("train",)
  HOMEPAGE = "https://www.crcv.ucf.edu/projects/real-world/"
  CITATION = """@inproceedings{sultani2018real, title={Real-world Anomaly Detection in Surveillance Videos},
  author={Sultani, Waqas and Chen, Chen and Shah, Mubarak}, booktitle={CVPR}, year={2018}}"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """Download UCF-Crime from https://www.crcv.ucf.edu/projects/real-world/ (the
`Training-Normal-Videos-Part-1.zip`/`-Part-2.zip` parts, or `UCF_Crimes.zip`) and unpack into the manual directory.
Every `Normal_Videos*.mp4` found below it, outside folders named `Testing*`, becomes one training video."""

  def _find_data_root(self, manual_dir: pathlib.Path) -> pathlib.Path:
    return manual_dir

  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    return raw_videos(discover_split(root, "training", "ucf_crime"))
