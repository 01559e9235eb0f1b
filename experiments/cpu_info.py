"""The CPU a benchmark ran on, from ``/proc/cpuinfo``, without importing JAX or PyTorch.

Recorded in every benchmark JSON (``experiments/bench.py``, ``experiments/side_by_side.py``): CPU speed
figures do not carry from one CPU to another, so each figure names its CPU model and the vector / matrix
instruction sets (AVX2, AVX-512, AVX512-BF16, AMX, ...) that XLA:CPU and oneDNN can use on it.
"""

from __future__ import annotations

import os
import platform

# /proc/cpuinfo flags worth recording: vector, matrix and bf16/fp16 support.
FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "ssse3")


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
  """{"model_name", "flags", "logical_cpus", "affinity_cpus", "machine"} of this host.

  ``flags`` keeps only the vector / matrix flags (``avx*``, ``amx*``, ``fma``, ``f16c``, ``sse4*``,
  ``ssse3``), sorted; ``model_name`` is None where ``/proc/cpuinfo`` cannot be read.
  """
  model, flags = None, set()
  try:
    with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
          model = value.strip()
        elif key == "flags" and not flags:
          flags = {fl for fl in value.split() if fl.startswith(FLAG_PREFIXES)}
  except OSError:
    pass
  affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
  return {"model_name": model or platform.processor() or None, "flags": sorted(flags),
          "avx512": any(f.startswith("avx512") for f in flags), "avx512_bf16": "avx512_bf16" in flags,
          "amx": any(f.startswith("amx") for f in flags), "logical_cpus": os.cpu_count(),
          "affinity_cpus": affinity, "machine": platform.machine()}
