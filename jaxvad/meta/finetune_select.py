"""Fine-tuning step size and step count chosen on held-out SOURCE episodes, never with target labels.

With ``fewshot.select`` set, the last ``val_fraction`` of every source video is held out: pre-training and
meta-training see only the first part (`holdout_tail`), and validation episodes (K support + Q query disjoint
windows of one scene, as in meta-training) are drawn from the held-out tails. Each fine-tuning row ("finetune"
from the meta-learned init, "pretrained" from the pre-trained one) gets the (lr, steps) of the grid with the
lowest mean query loss after fine-tuning on the support windows; lr = 0 (no adaptation) is always a candidate,
and wins ties, so a row is never forced to move away from its initialisation when no step size helps on the
sources.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import numpy as np

from jaxvad.data.episodes import EpisodeSampler
from jaxvad.data.types import Split
from jaxvad.errors import ConfigError
from jaxvad.meta import core

log = logging.getLogger(__name__)


def holdout_tail(split: Split, fraction: float) -> tuple[Split, Split]:
  """(head, tail): every video cut in two, the last ``fraction`` of its frames in ``tail`` (views, no copy)."""
  if not 0 < fraction < 1:
    raise ConfigError(f"fewshot.select.val_fraction={fraction} must lie strictly between 0 and 1")
  head, tail = [], []
  for v in split.videos:
    cut = v.num_frames - int(round(v.num_frames * fraction))
    head.append(dataclasses.replace(v, frames=v.frames[:cut], labels=None if v.labels is None else v.labels[:cut]))
    tail.append(dataclasses.replace(v, frames=v.frames[cut:], labels=None if v.labels is None else v.labels[cut:]))
  kind = type(split)
  extra = {f.name: getattr(split, f.name) for f in dataclasses.fields(split) if f.name not in ("dataset", "split",
                                                                                               "videos")}
  return kind(split.dataset, split.split, head, **extra), kind(split.dataset, f"{split.split}-heldout", tail, **extra)


def validation_sampler(tail: Split, *, t: int, k_support: int, n_query: int, seed: int) -> EpisodeSampler:
  """An episode sampler over the held-out tails of the scenes long enough for one episode."""
  need = (k_support + n_query) * (t + 1)
  scenes = sorted({v.scene for v in tail.videos if v.num_frames >= need})
  if not scenes:
    longest = max(v.num_frames for v in tail.videos)
    raise ConfigError(f"fewshot.select: no held-out source tail holds an episode of {need} frames (longest "
                      f"{longest}); raise fewshot.select.val_fraction or lower meta.k_support / meta.n_query")
  return EpisodeSampler(tail, t=t, k_support=k_support, n_query=n_query, seed=seed + 7919, scenes=scenes)


def select(task_loss, inits: dict, frozen, sampler: EpisodeSampler, *, lrs, steps, num_episodes: int) -> dict:
  """The (lr, steps) of the grid with the lowest mean held-out query loss, per initialisation.

  Args:
    task_loss: `core.make_task_loss` of the model.
    inits: {row name: theta} (e.g. {"finetune": meta theta, "pretrained": pre-trained theta}).
    frozen: the frozen AE parameters.
    sampler: held-out source episodes (`validation_sampler`).
    lrs, steps: the grid; lr = 0 is added (no adaptation).
    num_episodes: validation episodes (the same for every candidate and row).

  Returns:
    {row: {"lr", "steps", "loss", "grid": [{"lr", "steps", "loss"}, ...]}}.
  """
  episodes = sampler.sample(0, num_episodes)  # support [E, K, T+1, H, W, 3], query [E, Q, T+1, H, W, 3]
  fns = {}
  plain = jax.jit(task_loss)

  def loss_after(theta, lr, n):
    if n not in fns:
      fns[n] = jax.jit(lambda th, fr, sup, qry, lr, n=n: task_loss(
          core.finetune(task_loss, th, fr, sup, lr=lr, num_steps=n), fr, qry))
    return float(np.mean([fns[n](theta, frozen, episodes["support"][e], episodes["query"][e], lr)
                          for e in range(num_episodes)]))

  grid = [(0.0, 0)] + [(float(lr), int(n)) for lr in lrs for n in steps if lr > 0 and n > 0]
  out = {}
  for row, theta in inits.items():
    results = [{"lr": lr, "steps": n, "loss": loss_after(theta, lr, max(n, 1)) if lr > 0 else
                float(np.mean([plain(theta, frozen, episodes["query"][e]) for e in range(num_episodes)]))}
               for lr, n in grid]
    best = min(results, key=lambda r: r["loss"])
    if results[0]["loss"] <= best["loss"] * (1 + 1e-6) + 1e-12:  # Ties (float noise): keep the un-adapted model.
      best = results[0]
    out[row] = {**best, "grid": results}
    log.info("fine-tuning for %s chosen on %d held-out source episodes: lr %g, %d step(s) (query loss %.5g; "
             "no adaptation %.5g)", row, num_episodes, best["lr"], best["steps"], best["loss"], results[0]["loss"])
  return out
