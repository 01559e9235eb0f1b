"""MPU meta-training (MPN Sec. 3.3, SPEC 3.5): pre-train, freeze the AE, Meta-SGD over scene episodes.

1. Pre-train the whole model on the source videos with the frame loss only
   (``model.lambda1 = 0``) through the ordinary trainer (`jaxvad.train.loop`).
2. Freeze the autoencoder (encoder + U-Net decoder); theta = DPU + output head,
   alpha = a pytree shaped like theta (Meta-SGD step sizes). ``meta.adapted`` chooses another
   set for theta (`core.ADAPTED_SETS`), ``meta.learner`` another meta-learner (`learners`).
3. Meta-train (theta, alpha) with Adam on meta-batches of scene episodes: K support
   windows and disjoint query windows of one scene; the outer gradient flows through
   the inner update (second order by default).
"""

from __future__ import annotations

import copy
import logging
import pathlib

import jax
import tqdm

from jaxvad import models
from jaxvad.data.episodes import make_sampler
from jaxvad.data.types import Split
from jaxvad.meta import core
from jaxvad.meta import learners
from jaxvad.meta import step as meta_step_lib
from jaxvad.train import checkpoint as ckpt_lib
from jaxvad.train import distributed
from jaxvad.train import health
from jaxvad.train import loop
from jaxvad.train import mesh as mesh_lib
from jaxvad.train.metrics_log import MetricsWriter
from jaxvad.errors import WorkdirError

log = logging.getLogger(__name__)


def pretrain_config(config):
  """The pre-training config: the same model trained with the frame loss only."""
  c = copy.deepcopy(config)
  c.model.lambda1 = 0.0
  return c


def pretrain(config, workdir, split: Split, *, progress: bool = True):
  """Step 1: trains (or resumes) the model with L_fra only in ``workdir/pretrain``; returns its params."""
  state = loop.train(pretrain_config(config), pathlib.Path(workdir) / "pretrain", split, progress=progress)
  return jax.device_get(state.params)


def resolve_batching(batching: str) -> str:
  """"auto": unrolled episodes on CPU (vmapped second-order steps are much slower on XLA:CPU), vmap elsewhere."""
  if batching != "auto":
    return batching
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def num_meta_steps(mc, split: Split) -> int:
  """Meta-training length: ``meta.num_steps``, or with ``meta.num_epochs`` > 0 that many meta epochs.

  A meta epoch is one episode per source training video: ceil(videos / meta.episodes) meta-batches.
  """
  epochs = int(mc.get("num_epochs", 0) or 0)
  if epochs > 0:
    return epochs * -(-len(split.videos) // int(mc.episodes))
  return int(mc.num_steps)


def adapted_set(config) -> str:
  """``meta.adapted`` (absent in configs recorded before it existed: "dpu_head", theta = DPU + head)."""
  return config.meta.get("adapted", "dpu_head")


def split_by_config(config, params) -> tuple[dict, dict]:
  """(theta, frozen) of the MPN ``params`` by the configured ``meta.adapted`` set."""
  return core.split_params(params, adapted_set(config))


def meta_train(config, workdir, split: Split, params, *, progress: bool = True):
  """Step 2-3: meta-trains theta and alpha from the pre-trained ``params``; resumes from ``workdir/meta``.

  Returns:
    (theta, alpha, frozen) as host pytrees.
  """
  mc = config.meta
  out = pathlib.Path(workdir) / "meta"
  mdef = models.build(config.model)
  learner = learners.from_config(mc)
  theta, frozen = split_by_config(config, params)
  alpha = learners.init_alpha(learner, theta, mc.alpha_init)
  tx = meta_step_lib.make_meta_optimizer(mc.learning_rate)
  mesh = mesh_lib.make_mesh(config.get("num_devices", None))
  state = mesh_lib.put_replicated(meta_step_lib.init_meta_state(theta, alpha, tx), mesh)
  frozen = mesh_lib.put_replicated(frozen, mesh)
  main = distributed.is_main_process()  # Multi-process: same episodes everywhere, process 0 logs.
  ckpt = ckpt_lib.Checkpointer(out / "checkpoints")
  restored = ckpt.restore(state)
  if restored is not None:
    state = restored
  start, total = int(state.step), num_meta_steps(mc, split)
  batching = resolve_batching(mc.batching)
  task_loss = core.make_task_loss(mdef.module, mdef.loss_fn, config.model)
  step_fn = meta_step_lib.jit_meta_step(
      meta_step_lib.make_meta_step(task_loss, tx, inner_steps=mc.inner_steps, first_order=mc.first_order,
                                   batching=batching, hessian=mc.get("hessian", "forward"),
                                   remat=bool(mc.get("remat", False)), learner=learner.name), mesh,
      frame_hw=tuple(config.data.size))
  k_support = tuple(mc.get("shots", ())) or mc.k_support  # meta.shots set: K drawn per meta-batch from it.
  sampler = make_sampler(split, t=config.data.t, k_support=k_support, n_query=mc.n_query, seed=config.seed,
                         scene_weights=getattr(split, "scene_weights", None))
  log.info("%s: meta-training theta (%s: %d params) and alpha (%s) on %d scenes of %s: steps %d -> %d, %d "
           "episodes per meta-batch, K=%s, Q=%d, %s, %s-order", learner.name, adapted_set(config),
           sum(x.size for x in jax.tree.leaves(theta)), learner.alpha_kind, len(sampler.scene_names),
           split.dataset, start, total, mc.episodes, k_support, mc.n_query, batching,
           "first" if learner.first_order else "second")
  writer = MetricsWriter(out / "metrics.jsonl", resume_step=start) if main else None
  pending = health.PendingMetrics(
      lambda: ckpt.latest_step, str(ckpt.directory),
      f"lower meta.learning_rate (now {mc.learning_rate:g}) or meta.alpha_init (now {mc.alpha_init:g})")
  monitor = health.HealthMonitor(grad_key="theta_grad_norm")
  bar = tqdm.tqdm(total=total, initial=start, disable=not (progress and main), desc="meta-train", unit="step")
  log_every = loop.log_interval(mc.log_every, total)
  try:
    for s in range(start, total):
      episodes = sampler.sample(s, mc.episodes)
      episodes = mesh_lib.shard_batch({"support": episodes["support"], "query": episodes["query"]}, mesh)
      state, metrics = step_fn(state, frozen, episodes)
      done = s + 1
      pending.add(done, metrics)
      if done % log_every == 0 or done == total:
        mean = pending.window_mean()  # Raises NonFiniteError naming the first bad step.
        warnings = monitor(done, mean) if main else []
        if main:
          log.info("meta %s", loop.format_metrics(done, total, mean))
        if writer is not None:
          writer.write(done, mean, warnings)
        bar.set_postfix(query_loss=f"{mean.get('meta_loss', float('nan')):.4g}")
      bar.update(1)
      if done % mc.checkpoint_every == 0 or done == total:
        pending.check()  # A non-finite state is never saved.
        ckpt.save(done, state)
  finally:
    bar.close()
    ckpt.close()
  state = jax.device_get(state)
  return state.theta, state.alpha, jax.device_get(frozen)


def load_pretrained(config, workdir):
  """The pre-trained MPN parameters of ``workdir`` (``workdir/pretrain``, before any meta-training)."""
  workdir = pathlib.Path(workdir)
  mesh = mesh_lib.make_mesh(1)
  _, _, state = loop.create_train_state(pretrain_config(config), mesh, tuple(config.data.size))
  ckpt = ckpt_lib.Checkpointer(workdir / "pretrain" / "checkpoints")
  pre = ckpt.restore(state)
  ckpt.close()
  if pre is None:
    raise WorkdirError(f"no pre-trained model in {workdir}/pretrain: run `jaxvad meta` first")
  return jax.device_get(pre.params)


def load_meta(config, workdir):
  """The meta-trained (theta, alpha, frozen) of ``workdir`` (pretrain + meta checkpoints), split by ``meta.adapted``."""
  workdir = pathlib.Path(workdir)
  mesh = mesh_lib.make_mesh(1)
  theta, frozen = split_by_config(config, load_pretrained(config, workdir))
  tx = meta_step_lib.make_meta_optimizer(config.meta.learning_rate)
  alpha = learners.init_alpha(learners.from_config(config.meta), theta, config.meta.alpha_init)
  target = meta_step_lib.init_meta_state(theta, alpha, tx)
  ckpt = ckpt_lib.Checkpointer(workdir / "meta" / "checkpoints")
  meta = ckpt.restore(jax.device_put(target, mesh_lib.replicated(mesh)))
  ckpt.close()
  if meta is None:
    raise WorkdirError(f"no meta-trained model in {workdir}/meta: run `jaxvad meta` first")
  meta = jax.device_get(meta)
  return meta.theta, meta.alpha, frozen
