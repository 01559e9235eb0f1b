"""TFDS builders for UCSD Ped1 and Ped2 (Mahadevan et al., CVPR 2010).

Reads either the original archive through ``raw_layouts`` (layout "ucsd":
``UCSD_Anomaly_Dataset.v1p2/UCSDped2/{Train,Test}/<video>/NNN.tif``, ``Test/<video>_gt/NNN.bmp`` pixel masks
where they exist, ``Test/UCSDped2.m`` frame intervals) or the
frame-folder form of SPEC 1.1 (``training/frames``, ``testing/frames``, ``testing/gt_masks``, a label file).
"""

from __future__ import annotations

import pathlib

from jaxvad.data.errors import DataError
from jaxvad.data.raw_layouts import discover_split
from jaxvad.data.tfds_builders.base import SPLIT_DIRS, RawVideo, VadBuilder, find_root, raw_videos

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
    root = find_root(manual_dir, (f"UCSD_Anomaly_Dataset.v1p2/UCSDped{n}", f"UCSDped{n}", f"ped{n}"),
                     lambda p: (p / "Train").is_dir() or (p / "training" / "frames").is_dir(), f"UCSD Ped{n}")
    self._check_layout(root)
    return root

  def _check_layout(self, root: pathlib.Path) -> None:
    """Fails before any decoding, naming the problem, when ``root`` is not Ped{n} (e.g. Ped2 given as Ped1)."""
    n, other = self.NUMBER, 3 - self.NUMBER
    if (root / "Train").is_dir():  # Original archive: Test/ with the UCSDpedN.m frame intervals.
      if not (root / "Test").is_dir():
        raise DataError(f"UCSD Ped{n}: {root} has Train/ but no Test/ folder (unpack the whole archive)")
      found = {p.name for p in [*(root / "Test").glob("*.m"), *root.glob("*.m")]}
      mine, theirs = f"UCSDped{n}.m", f"UCSDped{other}.m"
    else:  # Frame-folder form: a Ped{n} label file.
      found = {p.name for p in root.iterdir() if p.is_file()}
      mine = {f"frame_labels_ped{n}.npy", f"ped{n}.mat", f"UCSDped{n}.m"}
      theirs = {f"frame_labels_ped{other}.npy", f"ped{other}.mat", f"UCSDped{other}.m"}
      mine, theirs = sorted(mine & found)[:1] or [None], sorted(theirs & found)[:1] or [None]
      mine, theirs = mine[0], theirs[0]
    looks_other = root.name.lower() in (f"ucsdped{other}", f"ped{other}") or (theirs in found and mine not in found)
    if looks_other:
      evidence = theirs if theirs in found else f"folder name {root.name}"
      raise DataError(f"UCSD Ped{n}: {root} looks like UCSD Ped{other} ({evidence}); point the manual directory "
                      f"at the Ped{n} data or build ucsd_ped{other} (--dataset ped{other})")
    if (root / "Train").is_dir() and not found:
      raise DataError(f"UCSD Ped{n}: no frame labels in {root}/Test (expected UCSDped{n}.m from the archive)")
    if not (root / "Train").is_dir():
      self._label_file(root)

  def _label_file(self, root: pathlib.Path) -> pathlib.Path:
    n = self.NUMBER
    for rel in (f"frame_labels_ped{n}.npy", f"ped{n}.mat", f"UCSDped{n}.m", f"testing/UCSDped{n}.m"):
      if (root / rel).is_file():
        return root / rel
    raise DataError(f"no frame labels for Ped{n} in {root} (expected frame_labels_ped{n}.npy, ped{n}.mat or "
                    f"UCSDped{n}.m)")

  def _raw_videos(self, root: pathlib.Path, split: str) -> list[RawVideo]:
    if not (root / "training" / "frames").is_dir():
      return raw_videos(discover_split(root, SPLIT_DIRS[split], "ucsd"))
    if split == "train":
      return raw_videos(discover_split(root, "training"))
    raw = discover_split(root, "testing", masks_dir=root / "testing" / "gt_masks")
    return raw_videos(raw, self._label_file(root))


class UcsdPed1(_Ucsd):
  """UCSD Ped1: 34 training and 36 test videos of 200 frames, 158x238 grayscale; masks for 10 test videos."""

  NUMBER = 1
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(1)


class UcsdPed2(_Ucsd):
  """UCSD Ped2: 16 training and 12 test videos, 240x360 grayscale; pixel masks for all test videos."""

  NUMBER = 2
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(2)
