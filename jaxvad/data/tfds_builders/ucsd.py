"""TFDS builders for UCSD Ped1 and Ped2 (Mahadevan et al., CVPR 2010).

Reads either the original archive (``UCSD_Anomaly_Dataset.v1p2/UCSDped2/{Train,Test}/<video>/NNN.tif``,
``Test/<video>_gt/NNN.bmp`` pixel masks where they exist, ``Test/UCSDped2.m`` frame intervals) or the
frame-folder form of SPEC 1.1 (``training/frames``, ``testing/frames``, ``testing/gt_masks``, a label file).
"""

from __future__ import annotations

import pathlib

from jaxvad.data.errors import DataError
from jaxvad.data.labels import load_frame_labels, load_pixel_masks
from jaxvad.data.layout import discover
from jaxvad.data.tfds_builders.base import SPLIT_DIRS, RawVideo, VadBuilder, find_root, frame_folders

_CITATION = """@inproceedings{mahadevan2010anomaly,
  title={Anomaly Detection in Crowded Scenes}, author={Mahadevan, Vijay and Li, Weixin and Bhalodia, Viral
  and Vasconcelos, Nuno}, booktitle={CVPR}, year={2010}}"""


def _instructions(n: int) -> str:
  return f"""Download `UCSD_Anomaly_Dataset.tar.gz` from http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm
and unpack it into the manual directory (default `~/tensorflow_datasets/downloads/manual/`), so that
`UCSD_Anomaly_Dataset.v1p2/UCSDped{n}/Train/Train001/001.tif` and `.../UCSDped{n}/Test/UCSDped{n}.m` exist.
The frame-folder form (`training/frames/01/000.jpg`, `testing/frames`, `testing/gt_masks`,
`frame_labels_ped{n}.npy` or `ped{n}.mat`) is accepted too: point the manual directory at its root."""


class _Ucsd(VadBuilder, skip_registration=True):
  """UCSD pedestrian walkway (one scene)."""

  NUMBER = 0
  HOMEPAGE = "http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm"
  CITATION = _CITATION

  def _find_data_root(self, manual_dir: pathlib.Path) -> pathlib.Path:
    n = self.NUMBER
    return find_root(manual_dir, (f"UCSD_Anomaly_Dataset.v1p2/UCSDped{n}", f"UCSDped{n}", f"ped{n}"),
                     lambda p: (p / "Train").is_dir() or (p / "training" / "frames").is_dir(), f"UCSD Ped{n}")

  def _label_file(self, root: pathlib.Path) -> pathlib.Path:
    n = self.NUMBER
    for rel in (f"frame_labels_ped{n}.npy", f"ped{n}.mat", f"UCSDped{n}.m", f"Test/UCSDped{n}.m",
                f"testing/UCSDped{n}.m"):
      if (root / rel).is_file():
        return root / rel
    raise DataError(f"no frame labels for Ped{n} in {root} (expected Test/UCSDped{n}.m or frame_labels_ped{n}.npy)")

  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    framed = (root / "training" / "frames").is_dir()
    if framed:
      entries = discover(root, SPLIT_DIRS[split], "dataset")
      mask_root = root / "testing" / "gt_masks"
    else:
      sub = root / ("Train" if split == "train" else "Test")
      entries, mask_root = frame_folders(sub), sub
    if split == "train":
      return [RawVideo(e) for e in entries]
    labels = load_frame_labels(self._label_file(root), [e.name for e in entries], [len(e.frames) for e in entries])
    out = []
    for e, lab in zip(entries, labels):
      mdir = mask_root / (e.name if framed else f"{e.name}_gt")
      masks = (lambda size, d=mdir: load_pixel_masks(d, size)) if mdir.is_dir() else None
      out.append(RawVideo(e, lab, masks))
    return out


class UcsdPed1(_Ucsd):
  """UCSD Ped1: 34 training and 36 test videos of 200 frames, 158x238 grayscale; masks for 10 test videos."""

  NUMBER = 1
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(1)


class UcsdPed2(_Ucsd):
  """UCSD Ped2: 16 training and 12 test videos, 240x360 grayscale; pixel masks for all test videos."""

  NUMBER = 2
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(2)
