"""Throughput of the window loader (``WindowSource.iterate``) from an on-disk memmap cache.

Measures windows/s at batch 4 (the papers' batch) and 32, at 256x256 (paper size) and the CPU config sizes
64x64 and 128x128, with and without the prefetch thread. Data: real UCSD Ped2 training frames prepared
into a temporary cache when ``../shared/data/ped2`` and ``jaxvad.data.prepare`` exist, otherwise a random
uint8 cache of 2000 frames (4 videos) written with ``np.save`` and opened with ``mmap_mode="r"``. The
cache is freshly written, so reads come from the OS page cache (warm), as in an epoch after the first.

Usage:
  .venv/bin/python experiments/loader_bench.py [--quick] [--out experiments/results/loader_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxvad.data.types import Split, VideoData  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.data.windows import WindowSource  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.utils import atomic_write_json  # noqa: E402  pylint: disable=wrong-import-position

PED2 = REPO.parent / "shared" / "data" / "ped2"
T = 4


def ped2_split(cache: pathlib.Path, size: int, num_videos: int) -> Split | None:
  """Real Ped2 training videos through the project's own prepare/load path, or None where unavailable."""
  if not (PED2 / "training" / "frames").is_dir():
    return None
  try:
    from jaxvad.data.prepare import load_split, prepare_split  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  names = sorted(p.name for p in (PED2 / "training" / "frames").iterdir() if p.is_dir())[:num_videos]
  prepare_split(PED2, "training", cache, dataset="ped2", size=(size, size), videos=names, progress=False)
  return load_split(cache, "ped2", "training", (size, size))


def random_split(cache: pathlib.Path, size: int, num_frames: int, num_videos: int = 4) -> Split:
  """A random uint8 cache of ``num_frames`` frames in ``num_videos`` videos, opened as memmaps."""
  rng = np.random.default_rng(0)
  videos = []
  for i in range(num_videos):
    path = cache / f"random_{size}_{i:02d}.npy"
    n = num_frames // num_videos
    np.save(path, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    videos.append(VideoData(f"{i:02d}", "random", np.load(path, mmap_mode="r")))
  return Split("random", "training", videos)


def time_iterate(src: WindowSource, batch: int, steps: int, repeats: int, prefetch: int,
                 consumer_ms: float = 0.0) -> dict:
  """Median windows/s of consuming ``steps`` batches from ``src.iterate``, after one warm-up pass.

  ``consumer_ms`` simulates a device step per batch with a GIL-free sleep, to show how much of the load
  time the prefetch thread hides.
  """
  rates = []
  for r in range(repeats + 1):
    start_step = r * steps  # different batches each repeat, as in training
    t0 = time.perf_counter()
    for _, b in src.iterate(start_step, steps, batch, seed=0, prefetch=prefetch):
      del b
      if consumer_ms:
        time.sleep(consumer_ms / 1000)
    dt = time.perf_counter() - t0
    if r > 0:  # r = 0 is the warm-up
      rates.append(steps * batch / dt)
  return {"windows_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
          "repeats": repeats, "steps": steps,
          "batches_per_s": statistics.median(rates) / batch}


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer frames and repeats (a ~1 minute run)")
  parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "loader_throughput.json"))
  parser.add_argument("--random", action="store_true", help="use the random cache even where Ped2 exists")
  args = parser.parse_args(argv)

  sizes = [64, 128, 256]
  batches = [4, 32]
  repeats = 3 if args.quick else 5
  windows_per_repeat = 512 if args.quick else 2048
  num_frames = 400 if args.quick else 2000
  results = []
  source = None
  with tempfile.TemporaryDirectory(prefix="jaxvad_loader_bench_") as tmp:
    for size in sizes:
      cache = pathlib.Path(tmp) / f"{size}"
      cache.mkdir()
      split = None if args.random else ped2_split(cache, size, num_videos=4)
      source = "ped2_training_4_videos" if split is not None else f"random_uint8_{num_frames}_frames"
      if split is None:
        split = random_split(cache, size, num_frames)
      src = WindowSource(split, t=T)
      for batch in batches:
        steps = max(2, windows_per_repeat // batch)
        for prefetch in (2, 0):
          r = time_iterate(src, batch, steps, repeats, prefetch)
          r.update(size=size, batch=batch, prefetch=prefetch, consumer_ms=0.0, num_windows=len(src),
                   num_frames=split.num_frames)
          results.append(r)
          print(f"{size}x{size} batch {batch:2d} prefetch {prefetch}: {r['windows_per_s']:8.1f} windows/s "
                f"({r['batches_per_s']:.1f} batches/s)", flush=True)
      if size == 256:  # a consumer as busy as the loader: prefetch should approach 2x
        consumer_ms = 2.0
        for prefetch in (2, 0):
          r = time_iterate(src, 4, windows_per_repeat // 16, repeats, prefetch, consumer_ms)
          r.update(size=size, batch=4, prefetch=prefetch, consumer_ms=consumer_ms, num_windows=len(src),
                   num_frames=split.num_frames)
          results.append(r)
          print(f"{size}x{size} batch  4 prefetch {prefetch} with a {consumer_ms} ms consumer step: "
                f"{r['windows_per_s']:8.1f} windows/s", flush=True)
  report = {
      "what": "WindowSource.iterate throughput (t = 4, float32 [B, 5, H, W, 3] batches) from a memmap cache",
      "data_source": source,
      "page_cache": "warm (cache written just before reading)",
      "consumer": "consumer_ms = 0: each batch is dropped (prefetch=2 then measures the thread's overhead); "
                  "consumer_ms > 0: a GIL-free sleep per batch standing in for a device step",
      "quick": args.quick,
      "machine": {"cpu_count": os.cpu_count(),
                  "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                  "numpy": np.__version__, "python": platform.python_version(),
                  "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
      "results": results,
  }
  atomic_write_json(pathlib.Path(args.out), report, indent=2)
  print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main()
