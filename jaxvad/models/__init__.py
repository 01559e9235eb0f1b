"""Model registry: name -> (flax module builder, loss function, extra-score function).

Every model maps input frames [B, T, H, W, 3] to ``(pred [B, H, W, 3], aux)``; its
``loss_fn(pred, aux, window, config)`` returns ``(loss, metrics)`` and its
``score_fn`` returns per-window scalars used besides the PSNR of ``pred``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxvad.models import baseline
from jaxvad.models import conv_impl
from jaxvad.models import mpn
from jaxvad.models import pgm
from jaxvad.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelDef:
  module: nn.Module
  loss_fn: Callable
  score_fn: Callable
  # health_fn(metrics: dict[str, float], model_config) -> list[str]: warnings about a
  # training run read from its logged (window-averaged) metrics, e.g. a collapsed
  # memory. The training loop calls it at every log window; None = no checks.
  health_fn: Callable | None = None


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config) -> ModelDef:
  """Builds the model named by ``model_config.name`` from a config."""
  name = model_config.name
  dtype = _DTYPES[model_config.get("dtype", "float32")]
  conv = model_config.get("conv", "xla")
  conv_impl.get(conv)  # Validates the name.
  if name == "baseline":
    module = baseline.FramePredictor(
        width=model_config.width, norm=model_config.norm, upsample=model_config.upsample, dtype=dtype,
        conv=conv)
    return ModelDef(module, baseline.loss_fn, baseline.score_fn)
  if name == "mpn":
    module = mpn.MPN(
        width=model_config.width, norm=model_config.norm, upsample=model_config.upsample,
        num_prototypes=model_config.num_prototypes, plug=model_config.plug,
        use_dpu=model_config.use_dpu, attention_init_std=model_config.get("attention_init_std"),
        dtype=dtype, conv=conv)
    return ModelDef(module, mpn.loss_fn, mpn.score_fn, health_fn=mpn.health_fn)
  if name == "pgm":
    module = pgm.PGM(
        width=model_config.width, norm=model_config.norm, upsample=model_config.upsample,
        num_items=model_config.num_items, use_memory=model_config.use_memory, use_diff=model_config.use_diff,
        rule_update=model_config.rule_update, grad_items=model_config.grad_items,
        update_scope=model_config.get("update_scope", "all"), dtype=dtype, conv=conv)
    return ModelDef(module, pgm.loss_fn, pgm.score_fn, health_fn=pgm.health_fn)
  raise ConfigError(f"unknown model {name!r}; known: baseline, mpn, pgm")
