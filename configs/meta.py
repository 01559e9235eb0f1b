"""MPU: Meta-SGD few-shot scene adaptation of MPN and the cross-dataset table (MPN Table 2, SPEC 3.5).

One command runs the whole protocol, each stage resumable from the work directory:
pre-train MPN on the source with the frame loss only -> freeze the autoencoder ->
meta-train theta (DPU + head) and alpha on scene episodes -> per target test video,
adapt on its first K windows and score the rest -> a table of AUC per K (0, 1, 5, 10)
for "Meta" and the "Finetune" baseline (plain gradient steps, fixed learning rate),
all columns on the same frames.

Variants (``get_config(arg)``):
  synthetic   source: synthetic scenes 01-03, 06-08 (training videos); target: held-out
              scenes 04 (largest, slowest objects) and 05 (smallest, fastest): their normal
              speed and size lie outside the source's. 64x64, width 0.25. CPU-sized.
              jaxvad meta --config configs/meta.py:synthetic --workdir runs/meta_synthetic
  synthetic_ped2
              source: all 8 synthetic scenes; target: real UCSD Ped2 test videos (64x64).
              JAXVAD_DATA=../shared/data jaxvad meta --config configs/meta.py:synthetic_ped2 --workdir runs/meta_ped2
  Table 2 rows (paper: 256x256, full width, Adam 1e-5 for theta and alpha, alpha init 1e-6,
  10 episodes per meta-batch, 1 inner step; pre-training as configs/mpn.py):
  shanghaitech_ped1 | shanghaitech_ped2 | shanghaitech_avenue   (source ShanghaiTech training scenes)
  ucf_ped1 | ucf_ped2 | ucf_avenue                              (source UCF-Crime normal videos, a scene each)
              jaxvad meta --config configs/meta.py:shanghaitech_ped2 --workdir runs/meta_sh_ped2
              Meta-training length: 1000 meta epochs (paper), a meta epoch being one episode per source
              training video (ShanghaiTech: 330 videos = 33 meta-batches of 10 episodes, 33,000 steps).
              Expected runtime, an estimate (nothing here was run on a GPU): pre-training as
              configs/mpn.py:shanghaitech (~36 h) plus meta-training (several GPU-days).
"""

import ml_collections

from jaxvad import config_lib
from jaxvad.meta import online

TARGETS = {"ped1": "ped1", "ped2": "ped2", "avenue": "avenue"}
SOURCES = {"shanghaitech": "shanghaitech", "ucf": "ucf_crime"}
VARIANTS = ("synthetic", "synthetic_ped2", *(f"{s}_{t}" for s in SOURCES for t in TARGETS))  # Every accepted name.


def _meta_fields(c, *, paper: bool) -> None:
  c.meta = dict(
      # Length: a meta epoch is one episode per source training video (ceil(videos / episodes)
      # meta-batches, `jaxvad.meta.train.num_meta_steps`); the paper's "1000 epochs". num_epochs = 0
      # uses num_steps instead (the CPU-sized variants).
      num_epochs=1000 if paper else 0,
      num_steps=0 if paper else 150,
      episodes=10 if paper else 4,        # Episodes per meta-batch (paper: 10).
      k_support=1 if paper else 5,        # Support windows per episode while meta-training.
      n_query=1 if paper else 2,          # Query windows per episode.
      inner_steps=1, first_order=False,
      learner="meta_sgd",                 # meta_sgd | maml | fomaml | per_tensor | reptile (docs/meta.md).
      adapted="dpu_head",                 # What adapts: dpu | dpu_head | dpu_head_decoder | all (docs/meta.md).
      remat=False,                        # Rematerialise the inner steps in the backward pass (inner_steps > 1).
      alpha_init=1e-6 if paper else 1e-2,  # Meta-SGD step sizes (reference: 1e-6).
      learning_rate=1e-5 if paper else 1e-3,  # Adam for theta and alpha (paper: 1e-5).
      batching="auto",                    # unroll on CPU, vmap on accelerators.
      hessian="forward",                  # Outer gradient: closed form with a forward-over-reverse HVP,
                                          # or "reverse" (jax.grad through the inner update): same value.
      log_every=10, checkpoint_every=50,
      shots=())                           # Non-empty: K drawn per meta-batch from it (else k_support).
  c.fewshot = dict(shots=(0, 1, 5, 10), methods=("meta", "finetune"),
                   finetune_lr=c.meta.alpha_init if not paper else 1e-4, finetune_steps=1, batch_size=32,
                   support=("test_first",))  # Support protocols: "test_first" | "train_random" (docs/fewshot.md).
  # `jaxvad stream`: online adaptation of a live camera (jaxvad/meta/online.py, docs/online.md).
  c.online = dict(online.DEFAULTS)


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  if arg in REAL_VARIANTS:
    return real_config(arg)
  if arg in ("synthetic", "synthetic_ped2"):
    c = config_lib.load_config("configs/mpn.py:quick")
    c.data.synthetic.update(test_videos_per_scene=4)
    if arg == "synthetic":
      c.data.scenes = ("01", "02", "03", "06", "07", "08")
      c.target = c.data.copy_and_resolve_references()
      c.target.scenes = ("04", "05")
    else:
      c.target = config_lib.data_config("ped2", size=64)
    c.train.num_steps = 500  # Pre-training steps (frame loss only).
    _meta_fields(c, paper=False)
    return c
  source, _, target = arg.partition("_")
  if source not in SOURCES or target not in TARGETS:
    raise config_lib.ConfigError(f"unknown variant {arg!r}; use synthetic, synthetic_ped2, real_ped2, mixed_ped2 or "
                     f"<source>_<target> with "
                     f"source in {sorted(SOURCES)} and target in {sorted(TARGETS)}")
  c = config_lib.load_config("configs/mpn.py:shanghaitech")
  if source == "ucf":
    c.data = config_lib.data_config("ucf_crime", size=256)
  c.target = config_lib.data_config(TARGETS[target], size=256)
  _meta_fields(c, paper=True)
  return c


# --- Real-camera few-shot variants (issue 14; docs/fewshot.md). Appended: get_config is wrapped below. ---

REAL_VARIANTS = ("real_ped2", "mixed_ped2")


def real_config(arg: str) -> ml_collections.ConfigDict:
  """Sources real cameras (+ synthetic scenes) -> target UCSD Ped2 test videos, CPU-sized.

  real_ped2   sources: realscenes (avenue + pets09: 2 real cameras, 5 videos, 3,188 frames) -> Ped2 test.
  mixed_ped2  the same plus the 8 synthetic scenes (weighted so real and synthetic are drawn equally often).
  Both: 64x64, width 0.25, 500 pre-training steps, 300 meta-training steps of 4 episodes, K drawn per
  meta-batch from (1, 5, 10), Q = 2; rows Meta (2nd order), Meta (1st order), Finetune from meta init and Pre-trained
  (fine-tuning step size and count chosen on held-out source episodes); both support protocols; the in-domain
  reference line (the same model trained on Ped2's own training split, 500 steps).

    JAXVAD_DATA=../shared/data jaxvad meta --config configs/meta.py:real_ped2 --workdir runs/meta_real_ped2
    JAXVAD_DATA=../shared/data jaxvad meta --config configs/meta.py:mixed_ped2 --workdir runs/meta_mixed_ped2

  Runtime, measured on 2 CPU cores shared with other jobs: real_ped2 23.5 / 31.1 / 36.3 min (seeds 0 / 1 / 2; the aim,
  <= 30 min per seed, met by seed 0, the least shared), mixed_ped2 54 / 39 / 28 min (seeds 0 / 1 / 2; 3, 2 and 1
  other jobs running).
  Results and the analysis of why adaptation does not help: docs/fewshot.md. realscenes is read from
  $JAXVAD_DATA/realscenes (default ./data/realscenes).
  """
  c = config_lib.load_config("configs/mpn.py:quick")
  real = dict(name="realscenes", root=str(config_lib.data_root() / "realscenes"), scene_rule="prefix",
              labels="", masks_dir="")
  if arg == "real_ped2":
    c.data.sources = (real,)
  elif arg == "mixed_ped2":
    c.data.sources = (dict(real, weight=1.0), dict(name="synthetic", weight=1.0))
  else:
    raise config_lib.ConfigError(f"unknown variant {arg!r}; use one of {REAL_VARIANTS}")
  c.target = config_lib.data_config("ped2", size=64)
  c.train.num_steps = 500
  _meta_fields(c, paper=False)
  c.meta.num_steps = 300
  c.meta.shots = (1, 5, 10)  # K drawn per meta-batch: no worse than one model per K (docs/fewshot.md).
  c.fewshot.methods = ("meta", "meta_fo", "finetune", "pretrained")  # meta_fo: a 2nd, first-order meta-training.
  c.fewshot.support = ("test_first", "train_random")
  c.fewshot.reference = True  # In-domain reference line: the same model trained on Ped2's training split.
  # Fine-tuning step size and count chosen on held-out source episodes (the last 20% of every source video).
  c.fewshot.select = dict(val_fraction=0.2, lrs=(1e-3, 1e-2, 1e-1), steps=(1, 5), episodes=8)
  return c
