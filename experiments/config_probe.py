"""Short CPU probes behind two config choices (issue 15, items 1-2); one JSON each.

  pgm   The memory update rule: configs/pgm.py:quick (synthetic, 64x64, width 0.25) trained for
        --steps steps with model.update_scope = "all" (the paper's Eq. 11) and "nearest" (MNAD's
        rule); per logged step: items_used, d_m (Eq. 26 / N), l_dis, grad_norm, l_pred.
        -> experiments/results/probe_pgm_update_scope.json
  mpn   L_c weighting and the DPU attention init at the paper width (C = 128, width 1.0) on real
        UCSD Ped2 training frames at a reduced resolution (64x64, N = 4,096 positions) for --steps
        steps (paper Adam 1e-4, batch 4): per setting l_d and protos_used at init, then l_fra, l_c,
        l_d, protos_used while training; plus, at init only, the largest normalcy-map weight at
        64x64 and at the paper's 256x256 (N = 65,536).
        -> experiments/results/probe_mpn_paper_width.json
  mpn_init  init only, width 1.0: the largest normalcy-map weight (mean and max over the M maps) and
        L_d at 64x64 and 256x256 for attention init std None (LeCun), 1 and 3.
        -> experiments/results/probe_mpn_init.json

  PYTHONPATH=$PWD python experiments/config_probe.py pgm --steps 60
  JAXVAD_DATA=../shared/data PYTHONPATH=$PWD python experiments/config_probe.py mpn --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvad import config_lib
from jaxvad import models
from jaxvad.data import sources
from jaxvad.models import dpu as dpu_lib
from jaxvad.train import state as state_lib
from jaxvad.train import step as step_lib

RESULTS = pathlib.Path(__file__).parent / "results"


def _windows(videos: list[np.ndarray], t: int, batch: int, rng: np.random.Generator) -> np.ndarray:
  """Random windows [B, T+1, H, W, 3] in [-1, 1] from uint8 videos [F, H, W, 3]."""
  out = []
  for _ in range(batch):
    v = videos[rng.integers(len(videos))]
    s = rng.integers(v.shape[0] - t)
    out.append(v[s:s + t + 1])
  return np.stack(out).astype(np.float32) / 127.5 - 1.0


def _train(config, videos, steps: int, log_every: int, seed: int = 0):
  """Plain training loop (no checkpoints): returns the logged metric rows and seconds per step."""
  mdef = models.build(config.model)
  tx = state_lib.make_optimizer(config.optim)
  t, b = config.data.t, config.train.batch_size
  rng = np.random.default_rng(seed)
  sample = _windows(videos, t, b, rng)
  state = state_lib.init_state(mdef.module, tx, jax.random.PRNGKey(seed), jnp.asarray(sample[:, :-1]))
  step = jax.jit(step_lib.make_train_step(mdef.module, mdef.loss_fn, tx, config.model))
  key = jax.random.PRNGKey(seed + 1)
  rows, window, t0 = [], [], None
  for i in range(steps):
    state, m = step(state, {"frames": jnp.asarray(_windows(videos, t, b, rng))}, key)
    window.append({k: float(v) for k, v in m.items()})
    if i == 0:
      t0 = time.time()
    if (i + 1) % log_every == 0 or i == 0:
      rows.append({"step": i + 1, **{k: float(np.mean([w[k] for w in window])) for k in window[0]}})
      window = []
  return rows, (time.time() - t0) / max(steps - 1, 1), mdef, state


def probe_pgm(steps: int) -> dict:
  config = config_lib.load_config("configs/pgm.py:quick")
  split = sources.load(config.data, "training", progress=False)
  videos = [v.frames for v in split.videos]
  out = {}
  for scope in ("all", "nearest"):
    config.model.update_scope = scope
    rows, sps, _, _ = _train(config, videos, steps, log_every=10)
    health = models.build(config.model).health_fn
    out[scope] = {"rows": rows, "seconds_per_step": sps, "warnings_at_end": health(rows[-1], config.model)}
    print(scope, json.dumps(rows[-1]))
  return {"config": "configs/pgm.py:quick", "steps": steps, "batch_size": config.train.batch_size,
          "learning_rate": config.optim.learning_rate, "num_items": config.model.num_items, "runs": out}


def _ped2_videos(size: int, num_videos: int) -> list[np.ndarray]:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  root = config_lib.data_root() / "ped2" / "training" / "frames"
  videos = []
  for d in sorted(root.iterdir())[:num_videos]:
    frames = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR))
              for f in sorted(d.iterdir())]
    videos.append(np.stack(frames))  # [F, size, size, 3]
  return videos


def _init_stats(config, windows: np.ndarray, seed: int = 0) -> dict:
  """l_d, protos_used and the largest normalcy-map weight at init on ``windows``."""
  mdef = models.build(config.model)
  x = jnp.asarray(windows[:, :-1])
  variables = mdef.module.init(jax.random.PRNGKey(seed), x, train=False)
  pred, aux = jax.jit(lambda v, x: mdef.module.apply(v, x, train=False))(variables, x)
  _, m = mdef.loss_fn(pred, aux, jnp.asarray(windows), config.model)
  maps = aux["normalcy_maps"]  # [B, H, W, M], softmax over positions
  return {"l_d": float(m["l_d"]), "protos_used": float(m["protos_used"]), "l_c_sum": float(jnp.mean(
      dpu_lib.compactness_error(aux["features"], aux["prototypes"], aux["retrieval"]))),
          "max_map_weight": float(jnp.mean(jnp.max(maps.reshape(maps.shape[0], -1, maps.shape[-1]), axis=1))),
          "positions": int(maps.shape[1] * maps.shape[2])}


def probe_mpn_init(size: int) -> dict:
  """Init only, paper width: how concentrated the normalcy maps start, per attention init std."""
  out = {}
  for res, videos in ((size, _ped2_videos(size, 4)), (256, _ped2_videos(256, 2))):
    rng = np.random.default_rng(7)
    windows = _windows(videos, 4, 2, rng)
    for std in (None, 1.0, 3.0):
      config = config_lib.load_config("configs/mpn.py:ped2")
      config.model.update(attention_init_std=std, upsample="subpixel", conv="xla")
      mdef = models.build(config.model)
      x = jnp.asarray(windows[:, :-1])
      variables = mdef.module.init(jax.random.PRNGKey(0), x, train=False)
      _, aux = jax.jit(lambda v, x, m=mdef: m.module.apply(v, x, train=False))(variables, x)
      maps = np.asarray(aux["normalcy_maps"]).reshape(2, -1, 10)  # [B, N, M]
      top = maps.max(axis=1)  # [B, M] largest weight of each map
      out[f"{res}_std{std}"] = {"positions": maps.shape[1], "mean_over_maps_of_max_weight": float(top.mean()),
                                "max_over_maps_of_max_weight": float(top.max()),
                                "l_d": float(jnp.mean(dpu_lib.diversity_error(aux["prototypes"])))}
      print(res, std, json.dumps(out[f"{res}_std{std}"]))
  return {"config": "configs/mpn.py:ped2 at init (width 1.0, C = 128, M = 10), 2 Ped2 training windows",
          "runs": out}


def probe_mpn(steps: int, size: int) -> dict:
  settings = [("sum", 3.0), ("mean", 3.0), ("mean", 1.0), ("mean", None)]
  videos = _ped2_videos(size, 4)
  big = _ped2_videos(256, 1)
  out = {}
  for compactness, std in settings:
    config = config_lib.load_config("configs/mpn.py:ped2")
    config.model.update(compactness=compactness, compactness_channels=None, attention_init_std=std,
                        upsample="subpixel", conv="xla")
    config.data.size = (size, size)
    name = f"{compactness}_std{std}"
    rng = np.random.default_rng(123)
    init_small = _init_stats(config, _windows(videos, 4, 4, rng))
    init_big = _init_stats(config, _windows(big, 4, 1, rng)) if compactness == "mean" else None
    rows, sps, _, _ = _train(config, videos, steps, log_every=20)
    out[name] = {"compactness": compactness, "attention_init_std": std, f"init_{size}": init_small,
                 "init_256": init_big, "rows": rows, "seconds_per_step": sps}
    print(name, json.dumps(init_small), json.dumps(init_big), json.dumps(rows[-1]))
  return {"config": "configs/mpn.py:ped2 (width 1.0, C = 128, M = 10, plug 1, Adam 1e-4, batch 4)",
          "resolution": size, "train_videos": "Ped2 training 01-04", "steps": steps,
          "upsample": "subpixel (CPU speed; same parameter count)", "runs": out}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("part", choices=("pgm", "mpn", "mpn_init"))
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--size", type=int, default=64)
  args = parser.parse_args()
  start = time.time()
  if args.part == "pgm":
    res, name = probe_pgm(args.steps or 60), "probe_pgm_update_scope.json"
  elif args.part == "mpn_init":
    res, name = probe_mpn_init(args.size), "probe_mpn_init.json"
  else:
    res, name = probe_mpn(args.steps or 100, args.size), "probe_mpn_paper_width.json"
  res.update(wall_s=time.time() - start, machine=platform.machine(), cpus=os.cpu_count(),
             load_average_at_end=os.getloadavg(), jax=jax.__version__)
  RESULTS.mkdir(exist_ok=True)
  (RESULTS / name).write_text(json.dumps(res, indent=1) + "\n")
  print("wrote", RESULTS / name)


if __name__ == "__main__":
  main()
