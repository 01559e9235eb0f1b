"""Scenes of the synthetic multi-scene benchmark (SPEC 1.4): what "normal" means in each camera view.

A scene fixes a static background (smooth texture, structures, a walkway band) and the normal behaviour on it: object
shape, size, colour, speed and density. The eight base scenes are chosen so that what is normal in one scene is abnormal
in another (speed 3.5 px/frame is normal in scene 05 and a 4x speed anomaly in scene 04), the motivating case of MPN's
few-shot scene adaptation (paper Sec. 3.3). Lengths are given at a 64-px reference size and scale with the image.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxvad.errors import ConfigError

REFERENCE_SIZE = 64
NORMAL_SHAPES = ("disc", "square", "pedestrian")
# Shapes never used by normal objects of any scene: the appearance anomaly draws from these.
FOREIGN_SHAPES = ("cross", "diamond")

# shape, size, speed, walkway angle (deg), walkway width, density, background brightness, object colour.
_BASE_SCENES = (
    ("pedestrian", 8.0, 1.0, 0.0, 0.30, 3, 0.60, (0.12, 0.16, 0.45)),
    ("disc", 6.0, 3.0, 90.0, 0.25, 2, 0.32, (0.95, 0.85, 0.30)),
    ("square", 7.0, 2.0, 45.0, 0.30, 3, 0.62, (0.55, 0.08, 0.08)),
    ("pedestrian", 12.0, 0.8, 90.0, 0.35, 2, 0.40, (0.92, 0.92, 0.96)),
    ("disc", 5.0, 3.5, 0.0, 0.22, 3, 0.55, (0.06, 0.06, 0.06)),
    ("square", 10.0, 1.2, 135.0, 0.30, 2, 0.30, (0.30, 0.85, 0.90)),
    ("pedestrian", 6.0, 2.5, 30.0, 0.25, 4, 0.66, (0.15, 0.40, 0.12)),
    ("disc", 9.0, 1.6, 120.0, 0.30, 3, 0.38, (0.98, 0.55, 0.20)),
)


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """One camera view and its definition of normal.

  Attributes:
    scene_id: scene id string ("01", "02", ...), the prefix of its video names.
    seed: seed of the background texture and structures.
    brightness: mean background luminance in [0, 1].
    tint: RGB multiplier of the background (mean about 1).
    texture_contrast: amplitude of the low-frequency background noise.
    num_structures: static rectangles (buildings, benches) off the walkway.
    walkway_angle: direction of the walkway in degrees (0 = left-right, 90 = top-bottom; image y points down).
    walkway_width: width of the walkway band as a fraction of the image size.
    walkway_offset: signed offset of the walkway centre line from the image centre, fraction of the image size.
    object_size: object height in px at the 64-px reference size.
    speed: normal speed in px/frame at the 64-px reference size.
    density: mean number of objects on screen.
    shape: normal object shape, one of NORMAL_SHAPES.
    color: normal object RGB colour in [0, 1].
    noise: standard deviation of the per-frame sensor noise, in [0, 1] units.
  """

  scene_id: str
  seed: int
  brightness: float
  tint: tuple[float, float, float]
  texture_contrast: float
  num_structures: int
  walkway_angle: float
  walkway_width: float
  walkway_offset: float
  object_size: float
  speed: float
  density: float
  shape: str
  color: tuple[float, float, float]
  noise: float = 1.5 / 255

  def axis(self) -> np.ndarray:
    """Unit vector (x, y) along the walkway."""
    a = math.radians(self.walkway_angle)
    return np.array([math.cos(a), math.sin(a)])

  def normal(self) -> np.ndarray:
    """Unit vector (x, y) across the walkway."""
    a = math.radians(self.walkway_angle)
    return np.array([-math.sin(a), math.cos(a)])

  def centre(self, size: int) -> np.ndarray:
    """A point (x, y) in px on the walkway centre line, pixel centres at integers."""
    return np.full(2, (size - 1) / 2.0) + self.walkway_offset * size * self.normal()


def make_scenes(num_scenes: int = 8, seed: int = 0) -> list[SceneSpec]:
  """Makes `num_scenes` scenes, deterministic from `seed`.

  The first eight follow a fixed table of shapes, sizes, speeds and walkway directions (the seed varies their
  backgrounds, angles by up to 8 degrees and walkway offsets), so the cross-scene contrast holds for every seed.
  Further scenes perturb the table randomly.

  Args:
    num_scenes: number of scenes, at least 1.
    seed: seed of everything random.

  Returns:
    Scenes with ids "01", "02", ...
  """
  if num_scenes < 1:
    raise ConfigError(f"num_scenes must be >= 1, got {num_scenes}")
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5CE4E]))
  scenes = []
  for i in range(num_scenes):
    shape, size, speed, angle, width, density, bright, color = _BASE_SCENES[i % len(_BASE_SCENES)]
    tint = rng.uniform(0.8, 1.2, size=3)
    tint = tuple(float(t) for t in tint / tint.mean())
    angle += rng.uniform(-8.0, 8.0)
    if i >= len(_BASE_SCENES):  # beyond the base table: new behaviour, not a copy
      shape = NORMAL_SHAPES[int(rng.integers(len(NORMAL_SHAPES)))]
      size *= rng.uniform(0.8, 1.25)
      speed *= rng.uniform(0.7, 1.4)
      angle += rng.uniform(20.0, 160.0)
      density = int(rng.integers(2, 5))
    scenes.append(SceneSpec(
        scene_id=f"{i + 1:02d}",
        seed=int(rng.integers(2**31)),
        brightness=float(bright + rng.uniform(-0.04, 0.04)),
        tint=tint,
        texture_contrast=float(rng.uniform(0.06, 0.12)),
        num_structures=int(rng.integers(2, 5)),
        walkway_angle=float(round(angle % 180.0, 2)),
        walkway_width=float(width),
        walkway_offset=float(round(rng.uniform(-0.1, 0.1), 3)),
        object_size=float(round(size, 2)),
        speed=float(round(speed, 3)),
        density=float(density),
        shape=shape,
        color=tuple(float(c) for c in color),
    ))
  return scenes


def _interp_matrix(size: int, cells: int) -> np.ndarray:
  """Linear-interpolation weights [size, cells + 1] from a coarse grid onto `size` pixels."""
  pos = (np.arange(size) + 0.5) / size * cells
  lo = np.minimum(pos.astype(int), cells - 1)
  frac = pos - lo
  w = np.zeros((size, cells + 1))
  w[np.arange(size), lo] = 1.0 - frac
  w[np.arange(size), lo + 1] = frac
  return w


def render_background(scene: SceneSpec, size: int) -> np.ndarray:
  """Renders the static background of `scene`: float32 [size, size, 3] in [0, 1].

  Everything is drawn in units relative to the image size, so a scene looks the same at every resolution.
  """
  rng = np.random.default_rng(scene.seed)
  lum = np.full((size, size), scene.brightness)
  for cells, amp in ((3, 1.0), (7, 0.5)):  # low-frequency noise, two octaves
    w = _interp_matrix(size, cells)
    lum += scene.texture_contrast * amp * (w @ rng.standard_normal((cells + 1, cells + 1)) @ w.T)
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
  c, n = scene.centre(size), scene.normal()
  across = (xs - c[0]) * n[0] + (ys - c[1]) * n[1]  # signed distance from the walkway centre line, px
  half = scene.walkway_width * size / 2
  for _ in range(scene.num_structures):  # static structures, kept off the walkway
    for _ in range(20):
      cx, cy = rng.uniform(0.05, 0.95, size=2) * size
      hw, hh = rng.uniform(0.04, 0.12, size=2) * size
      if abs((cx - c[0]) * n[0] + (cy - c[1]) * n[1]) > half + max(hw, hh):
        break
    shade = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.2)
    lum[(np.abs(xs - cx) <= hw) & (np.abs(ys - cy) <= hh)] += shade
  band = np.clip(half + 0.5 - np.abs(across), 0.0, 1.0)  # anti-aliased walkway band
  lum = lum * (1 - 0.6 * band) + 0.6 * band * (scene.brightness + 0.08)
  kerb = np.clip(1.0 - np.abs(np.abs(across) - half) / max(0.75 * size / 64, 0.5), 0.0, 1.0)
  lum -= 0.12 * kerb
  rgb = lum[..., None] * np.asarray(scene.tint)[None, None, :]
  return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def shape_coverage(shape: str, dx: np.ndarray, dy: np.ndarray, size: float) -> np.ndarray:
  """Anti-aliased coverage in [0, 1] of a shape of height `size` px at offsets (dx, dy) from its centre.

  Coverage is 0.5 - signed distance, clipped, which gives smooth sub-pixel motion for slow objects.
  """
  ax, ay, h = np.abs(dx), np.abs(dy), size / 2
  if shape == "disc":
    sd = np.hypot(dx, dy) - h
  elif shape == "square":
    sd = np.maximum(ax, ay) - h
  elif shape == "pedestrian":  # upright capsule, width half its height
    r = size / 4
    sd = np.hypot(dx, np.maximum(ay - (h - r), 0.0)) - r
  elif shape == "cross":
    a = size * 0.18
    sd = np.minimum(np.maximum(ax - h, ay - a), np.maximum(ax - a, ay - h))
  elif shape == "diamond":
    sd = (ax + ay - h) / math.sqrt(2.0)
  else:
    raise ValueError(f"unknown shape {shape!r}; expected one of {NORMAL_SHAPES + FOREIGN_SHAPES}")
  return np.clip(0.5 - sd, 0.0, 1.0)
