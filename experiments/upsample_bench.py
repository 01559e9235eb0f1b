"""CPU timings of the 3x3 stride-2 transposed convolution vs its exact sub-pixel form.

Times (jit, after warm-up, median of repeats) the forward and forward+backward of
``lax.conv_transpose`` (what ``nn.ConvTranspose`` runs) and of
`jaxvad.models.upsample.subpixel_conv_transpose_3x3_s2` at the decoder's upsampling
shapes for a 256x256 input, and the whole baseline FramePredictor training step (Adam)
with ``upsample="conv_transpose"`` vs ``"conv_transpose_subpixel"``. Also checks that
the two give the same outputs/gradients/loss on the benchmarked shapes.

Usage:
  .venv/bin/python experiments/upsample_bench.py [--quick] [--out experiments/results/upsample_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxvad.models import baseline  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.models import upsample  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import state as state_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.train import step as step_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxvad.utils import atomic_write_text  # noqa: E402  pylint: disable=wrong-import-position

IMPLS = {"conv_transpose": upsample.conv_transpose_3x3_s2,
         "conv_transpose_subpixel": upsample.subpixel_conv_transpose_3x3_s2}


def time_fn(fn, args, repeats: int, budget_s: float) -> dict:
  """Median wall time of ``fn(*args)`` (blocked) after one compile+warm-up call."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
    if sum(times) > budget_s:
      break
  del out
  return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times),
          "first_call_s": first}


def bench_layer(batch: int, h: int, cin: int, cout: int, repeats: int, budget_s: float) -> dict:
  """Forward and forward+backward (w.r.t. x, kernel, bias) of both implementations."""
  kx, kk, kb, kw = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(kx, (batch, h, h, cin))
  kernel = jax.random.normal(kk, (3, 3, cin, cout)) / np.sqrt(9 * cin)
  bias = jax.random.normal(kb, (cout,))
  cot = jax.random.normal(kw, (batch, 2 * h, 2 * h, cout))
  res = {"shape": f"[{batch},{h},{h},{cin}] -> [{batch},{2 * h},{2 * h},{cout}]"}
  outs, grads = {}, {}
  for name, fn in IMPLS.items():
    fwd = jax.jit(fn)
    fwd_bwd = jax.jit(jax.grad(lambda x, k, b, fn=fn: jnp.sum(cot * fn(x, k, b)), argnums=(0, 1, 2)))
    res[name] = {"forward": time_fn(fwd, (x, kernel, bias), repeats, budget_s),
                 "forward_backward": time_fn(fwd_bwd, (x, kernel, bias), repeats, budget_s)}
    outs[name], grads[name] = fwd(x, kernel, bias), fwd_bwd(x, kernel, bias)
    print(name, res["shape"], {k: round(v["median_s"], 4) for k, v in res[name].items()}, flush=True)
  res["max_abs_diff_forward"] = float(jnp.max(jnp.abs(outs["conv_transpose"] - outs["conv_transpose_subpixel"])))
  res["max_rel_diff_grads"] = [
      float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
      for a, b in zip(grads["conv_transpose"], grads["conv_transpose_subpixel"])]
  for kind in ("forward", "forward_backward"):
    res[f"speedup_{kind}"] = (res["conv_transpose"][kind]["median_s"]
                              / res["conv_transpose_subpixel"][kind]["median_s"])
  return res


def bench_train_step(width: float, size: int, batch: int, repeats: int, budget_s: float) -> dict:
  """The baseline FramePredictor Adam train step (project's `make_train_step`), both upsamplings."""
  window = jax.random.uniform(jax.random.key(1), (batch, 5, size, size, 3), minval=-1.0, maxval=1.0)
  res = {"width": width, "image_size": size, "batch": batch, "t": 4}
  losses, params0 = {}, None
  for name in IMPLS:
    module = baseline.FramePredictor(width=width, upsample=name)
    tx = optax.adam(1e-4)
    state = state_lib.init_state(module, tx, jax.random.key(2), window[:, :-1])
    if params0 is None:
      params0 = state.params
    else:  # identical parameter trees: run both from the very same parameters.
      assert jax.tree.structure(params0) == jax.tree.structure(state.params)
      state = state.replace(params=params0, opt_state=tx.init(params0))
    res["num_params"] = state_lib.count_params(state.params)
    step = jax.jit(step_lib.make_train_step(module, baseline.loss_fn, tx, None))
    batch_dict = {"frames": window}
    rng = jax.random.key(3)
    _, metrics = step(state, batch_dict, rng)
    losses[name] = (float(metrics["loss"]), float(metrics["grad_norm"]))
    res[name] = time_fn(lambda s: step(s, batch_dict, rng), (state,), repeats, budget_s)
    print(name, f"train step w={width} {size}x{size} b={batch}", round(res[name]["median_s"], 3), flush=True)
  res["loss_grad_norm"] = losses
  res["speedup"] = res["conv_transpose"]["median_s"] / res["conv_transpose_subpixel"]["median_s"]
  return res


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small shapes and few repeats")
  parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "upsample_bench.json"))
  args = parser.parse_args()

  if args.quick:
    repeats, budget = 3, 5.0
    layers = [(2, 16, 32, 16), (2, 8, 64, 32)]
    steps = [(0.25, 64, 2)]
  else:
    repeats, budget = 5, 30.0
    # Decoder upsamplings of the paper network at a 256x256 input, batch 4.
    layers = [(4, 32, 512, 256), (4, 64, 256, 128), (4, 128, 128, 64)]
    steps = [(0.25, 128, 2), (1.0, 128, 2)]

  result = {
      "jax_version": jax.__version__,
      "device_kind": jax.devices()[0].device_kind,
      "platform": jax.devices()[0].platform,
      "cpu_count": os.cpu_count(),
      "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "machine": platform.machine(),
      "loadavg_at_start": os.getloadavg(),
      "quick": args.quick,
      "layers": [bench_layer(*shape, repeats, budget) for shape in layers],
  }
  result["train_steps"] = [bench_train_step(*cfg, repeats, budget) for cfg in steps]
  result["loadavg_at_end"] = os.getloadavg()
  atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
