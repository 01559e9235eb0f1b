"""Frame-prediction autoencoder without DPU or memory (SPEC 2).

Reproduces the "AE w/o DPU" row of MPN Table 1 / Table 4 (Ped1 83.2, Ped2 95.1,
Avenue 84.0, ShanghaiTech 66.7 AUC %) and the "baseline" column of PGM Table II.

Variants (``get_config(arg)``):
  quick      synthetic scenes, 64x64, width 0.25: the demo. ~5 min on 2 CPU cores.
             jaxvad demo            (or: jaxvad train --config configs/baseline.py:quick --workdir runs/quick)
  ped2_cpu   real UCSD Ped2, 64x64, width 0.25: the CPU-sized check. ~25 min train on 2 CPU cores.
             JAXVAD_DATA=../shared/data jaxvad run --config configs/baseline.py:ped2_cpu --workdir runs/ped2_cpu
  ped2 | ped1 | avenue | shanghaitech
             paper configuration: 256x256, full width, 3x3 transposed-conv upsampling, Adam 1e-4,
             batch 4, 60 epochs (ShanghaiTech 10). Ped2: ~2 h on one A100-class GPU.
             jaxvad run --config configs/baseline.py:ped2 --workdir runs/ped2_baseline
"""

import ml_collections

from jaxvad import config_lib

PAPER_EPOCHS = {"ped1": 60, "ped2": 60, "avenue": 60, "shanghaitech": 10}


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_devices = ml_collections.FieldReference(None, field_type=int)
  c.model = dict(name="baseline", width=1.0, norm="none", upsample="conv_transpose", dtype="float32")
  c.optim = dict(learning_rate=1e-4, grad_clip=0.0)
  c.train = dict(batch_size=4, num_epochs=60, num_steps=0, log_every=50, checkpoint_every=500)
  c.eval = dict(batch_size=16, smooth=False, plots=True, num_error_maps=4, score_weights={"psnr": 1.0})

  if arg == "quick":
    c.data = config_lib.data_config("synthetic", size=64)
    c.model.update(width=0.25, upsample="subpixel")
    c.optim.learning_rate = 1e-3
    c.train.update(batch_size=8, num_epochs=0, num_steps=500, log_every=25, checkpoint_every=250)
    c.eval.batch_size = 32
  elif arg == "ped2_cpu":
    c.data = config_lib.data_config("ped2", size=64)
    c.model.update(width=0.25, upsample="subpixel")
    c.optim.learning_rate = 1e-3
    c.train.update(batch_size=8, num_epochs=0, num_steps=5000, log_every=100, checkpoint_every=1000)
    c.eval.batch_size = 32
  elif arg in PAPER_EPOCHS:
    c.data = config_lib.data_config(arg, size=256)
    c.train.num_epochs = PAPER_EPOCHS[arg]
  else:
    raise ValueError(f"unknown variant {arg!r}; use quick, ped2_cpu or one of {sorted(PAPER_EPOCHS)}")
  return c
