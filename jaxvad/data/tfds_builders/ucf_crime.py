"""TFDS builder for the normal videos of UCF-Crime (Sultani, Chen, Shah, CVPR 2018), for meta-training.

Only the training split of normal videos (``Normal_Videos*.mp4`` outside any ``Testing*`` folder) is built:
each video is its own scene (SPEC 1.3), and no labels or masks are stored.
"""

from __future__ import annotations

import pathlib

from jaxvad.data.errors import DataError
from jaxvad.data.layout import VIDEO_EXTS, VideoEntry, natural_key
from jaxvad.data.tfds_builders.base import RawVideo, VadBuilder


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
    files = [f for f in root.rglob("*") if f.suffix.lower() in VIDEO_EXTS and f.name.startswith("Normal_Videos")
             and not any(p.lower().startswith("testing") for p in f.relative_to(root).parts[:-1])]
    seen: dict[str, pathlib.Path] = {}
    for f in files:
      if f.stem in seen:
        raise DataError(f"duplicate UCF-Crime video {f.stem}: {seen[f.stem]} and {f}")
      seen[f.stem] = f
    if not seen:
      raise DataError(f"no Normal_Videos*.mp4 below {root}; see the download instructions")
    return [RawVideo(VideoEntry(n, n, seen[n], "video")) for n in sorted(seen, key=natural_key)]
