"""TFDS builders for the VAD benchmarks (needs the optional ``tfds`` extra; no TensorFlow).

Importing this package registers ``ucsd_ped1``, ``ucsd_ped2``, ``cuhk_avenue``, ``shanghaitech_campus`` and
``ucf_crime_normal`` with TFDS, each with configs ``256x256`` (default) and ``original``; ``build.build`` (the
``jaxvad build-tfds`` command) makes a config of any size, e.g. ``64x64`` for the CPU configs.
"""

from jaxvad.data.tfds_builders.avenue import CuhkAvenue
from jaxvad.data.tfds_builders.base import VadBuilder, VadConfig
from jaxvad.data.tfds_builders.shanghaitech import ShanghaitechCampus
from jaxvad.data.tfds_builders.ucf_crime import UcfCrimeNormal
from jaxvad.data.tfds_builders.ucsd import UcsdPed1, UcsdPed2

BUILDERS = {b.name: b for b in (UcsdPed1, UcsdPed2, CuhkAvenue, ShanghaitechCampus, UcfCrimeNormal)}

__all__ = ["BUILDERS", "CuhkAvenue", "ShanghaitechCampus", "UcfCrimeNormal", "UcsdPed1", "UcsdPed2", "VadBuilder",
           "VadConfig"]
