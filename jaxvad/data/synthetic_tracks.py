"""Object trajectories of the synthetic benchmark: normal walkway traffic and the anomalous movers (SPEC 1.4).

A track is the per-frame centre (x, y) of one object (NaN where it does not exist) plus its shape, size and colour.
Positions are in px with pixel centres at integers. Anomalous tracks stay fully inside the frame for their whole
interval, so the frame labels are exactly the interval.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxvad.data.synthetic_scenes import FOREIGN_SHAPES, REFERENCE_SIZE, SceneSpec

# Saturated colours for the appearance anomaly; the one farthest from the scene's object and background is used.
_FOREIGN_COLORS = np.array([(1.0, 0.1, 0.1), (0.1, 0.95, 0.1), (0.15, 0.3, 1.0), (1.0, 0.95, 0.0), (1.0, 0.2, 1.0)])


@dataclasses.dataclass
class Track:
  """One object: centres x, y [N] (NaN = absent), shape name, height `size` in px, RGB `color` [3]."""

  x: np.ndarray
  y: np.ndarray
  shape: str
  size: float
  color: np.ndarray


def _chord(point: np.ndarray, direction: np.ndarray, size: int, margin: float) -> tuple[float, float]:
  """Parameter range [lo, hi] of point + s * direction inside the square [margin, size - 1 - margin]^2."""
  lo, hi = -np.inf, np.inf
  for p, d in zip(point, direction):
    if abs(d) < 1e-9:
      continue
    a, b = (margin - p) / d, (size - 1 - margin - p) / d
    lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
  if not lo < hi:  # the line misses the square: fall back to a point near `point`
    return -0.5, 0.5
  return float(lo), float(hi)


def _reflect(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Triangle wave: folds s into [lo, hi] (a mover that turns back at the ends)."""
  span = max(hi - lo, 1e-6)
  u = np.mod(s - lo, 2 * span)
  return lo + np.where(u > span, 2 * span - u, u)


def normal_tracks(scene: SceneSpec, num_frames: int, size: int, rng: np.random.Generator) -> list[Track]:
  """Normal traffic: objects enter at one end of the walkway and leave at the other, either way, at the scene speed.

  Arrivals are a Poisson process whose rate gives `scene.density` objects on screen on average; it starts before
  frame 0 so the first frame is already populated. Each object gets +-15% speed jitter and a small sideways sway.
  """
  k = size / REFERENCE_SIZE
  v, obj, half = scene.speed * k, scene.object_size * k, scene.walkway_width * size / 2
  c, u, n = scene.centre(size), scene.axis(), scene.normal()
  lo, hi = _chord(c, u, size, 0.0)
  rate = scene.density * v / (hi - lo)  # objects per frame
  lead = (hi - lo + 2 * obj) / (0.85 * v)  # longest crossing, in frames
  num = rng.poisson(rate * (num_frames + lead))
  starts = np.sort(rng.uniform(-lead, num_frames, size=num))
  t = np.arange(num_frames, dtype=np.float64)
  tracks = []
  for t0 in starts:
    lateral = rng.uniform(-1.0, 1.0) * max(half - obj / 2, 0.0)
    speed = v * rng.uniform(0.85, 1.15)
    line = c + lateral * n
    a, b = _chord(line, u, size, -obj)  # enter and leave fully off screen
    s = (t - t0) * speed
    present = (s >= 0) & (s <= b - a)
    if not present.any():
      continue
    s = a + s if rng.random() < 0.5 else b - s
    sway = 0.06 * obj * np.sin(2 * np.pi * (t - t0) / rng.uniform(12, 24))
    x = np.where(present, line[0] + s * u[0] + sway * n[0], np.nan)
    y = np.where(present, line[1] + s * u[1] + sway * n[1], np.nan)
    color = np.clip(np.asarray(scene.color) * rng.uniform(0.88, 1.12), 0.0, 1.0)
    tracks.append(Track(x, y, scene.shape, obj, color))
  return tracks


def _off_walkway_point(scene: SceneSpec, size: int, margin: float, rng: np.random.Generator) -> np.ndarray:
  """A random point far from the walkway (in the region normal objects never use)."""
  c, n = scene.centre(size), scene.normal()
  pts = rng.uniform(margin, size - 1 - margin, size=(256, 2))
  dist = np.abs((pts - c) @ n)
  far = pts[dist >= np.quantile(dist, 0.8)]
  return far[rng.integers(len(far))]


def anomaly_track(kind: str, scene: SceneSpec, num_frames: int, size: int, first: int, last: int,
                  rng: np.random.Generator) -> Track:
  """The anomalous object of `kind`, visible (fully inside the frame) exactly on frames first..last."""
  k = size / REFERENCE_SIZE
  v, obj, half = scene.speed * k, scene.object_size * k, scene.walkway_width * size / 2
  c, u, n = scene.centre(size), scene.axis(), scene.normal()
  shape, color = scene.shape, np.asarray(scene.color, dtype=np.float64)
  tt = np.arange(last - first + 1, dtype=np.float64)
  sign = rng.choice([-1.0, 1.0])
  if kind == "appearance":
    shape = FOREIGN_SHAPES[int(rng.integers(len(FOREIGN_SHAPES)))]
    obj = max(1.8 * obj, obj + 4 * k)
    bg = scene.brightness * np.asarray(scene.tint)
    dist = np.minimum(np.linalg.norm(_FOREIGN_COLORS - color, axis=1), np.linalg.norm(_FOREIGN_COLORS - bg, axis=1))
    color = _FOREIGN_COLORS[int(np.argmax(dist))]
  margin = obj / 2 + 1.0
  if kind in ("speed", "appearance", "zigzag"):
    lo, hi = _chord(c, u, size, margin)
    speed = v * (rng.uniform(3.5, 4.5) if kind == "speed" else rng.uniform(0.9, 1.1))
    s = _reflect((lo if sign > 0 else hi) + sign * speed * tt, lo, hi)
    if kind == "zigzag":  # wide, fast sideways swings across and beyond the walkway
      amp = half + obj / 2
      lateral = _reflect(-amp + max(3 * v, 3 * k) * tt, -amp, amp)
    else:
      lateral = np.full_like(tt, rng.uniform(-0.5, 0.5) * max(half - obj / 2, 0.0))
    pos = c[None] + s[:, None] * u[None] + lateral[:, None] * n[None]
  elif kind == "direction":  # across the walkway, turning back at the frame border
    base = c + rng.uniform(-0.25, 0.25) * size * u
    lo, hi = _chord(base, n, size, margin)
    speed = max(v, 1.0 * k) * rng.uniform(1.0, 1.2)
    s = _reflect((lo if sign > 0 else hi) + sign * speed * tt, lo, hi)
    pos = base[None] + s[:, None] * n[None]
  elif kind == "intrusion":  # wanders (Lissajous) in an off-walkway region
    radius = 0.1 * size
    p0 = _off_walkway_point(scene, size, margin + radius, rng)
    w = max(v, 1.0 * k) / radius
    ph = rng.uniform(0, 2 * np.pi, size=2)
    pos = p0[None] + radius * np.stack([np.sin(w * tt + ph[0]), np.sin(0.7 * w * tt + ph[1])], axis=1)
  else:
    raise ValueError(f"unknown anomaly kind {kind!r}")
  pos = np.clip(pos, margin, size - 1 - margin)
  x, y = np.full(num_frames, np.nan), np.full(num_frames, np.nan)
  x[first:last + 1], y[first:last + 1] = pos[:, 0], pos[:, 1]
  return Track(x, y, shape, obj, color)
