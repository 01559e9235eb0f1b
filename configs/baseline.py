"""Frame-prediction autoencoder without DPU or memory (SPEC 2).

Reproduces the "AE w/o DPU" row of MPN Table 1 / Table 4 (Ped1 83.2, Ped2 95.1,
Avenue 84.0, ShanghaiTech 66.7 AUC %) and the "baseline" column of PGM Table II.

Variants (``get_config(arg)``):
  quick      synthetic scenes, 64x64, width 0.25: the demo. ~5 min on 2 CPU cores.
             jaxvad demo            (or: jaxvad train --config configs/baseline.py:quick --workdir runs/quick)
  ped2_cpu   real UCSD Ped2, 64x64, width 0.25: the CPU-sized check. ~8 min on 2 CPU cores (12 min with
             the first data preparation).
             JAXVAD_DATA=../shared/data jaxvad run --config configs/baseline.py:ped2_cpu --workdir runs/ped2_cpu
  ped2 | ped1 | avenue | shanghaitech
             paper configuration: 256x256, full width, 3x3 transposed-conv upsampling (exact
             sub-pixel form), Adam 1e-4,
             batch 4, 60 epochs (ShanghaiTech 10). Ped2: ~2 h on one A100-class GPU (an estimate;
             nothing here was run on a GPU).
             jaxvad run --config configs/baseline.py:ped2 --workdir runs/ped2_baseline
"""

import ml_collections

from jaxvad import config_lib

PAPER_EPOCHS = {"ped1": 60, "ped2": 60, "avenue": 60, "shanghaitech": 10}
# CPU-sized variants: data set and number of steps (64x64, width 0.25, sub-pixel upsampling, batch 8).
CPU_VARIANTS = {"quick": ("synthetic", 500), "ped2_cpu": ("ped2", 5000)}
VARIANTS = (*CPU_VARIANTS, *PAPER_EPOCHS)  # Every name get_config accepts.


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_devices = ml_collections.FieldReference(None, field_type=int)
  # "conv_transpose_subpixel": the references' 3x3 stride-2 transposed conv (same parameters),
  # computed as one ordinary conv + depth-to-space: exact, and ~10x faster to train on CPU.
  # conv: how convolutions are computed, `jaxvad.models.conv_impl`; the same function and parameters either
  # way. "auto": im2col + one matrix product on CPU where the patch matrix is small, XLA's convolution
  # elsewhere and on GPU/TPU. Measured on 2 CPU cores (experiments/results/bench_cpu_paper*.json): full width
  # at 64x64, batch 1: inference 1.84x, K = 1 adaptation 1.67x; at 256x256 no layer's patch matrix is small
  # enough, so "auto" is "xla" there. At width 0.25 no clear gain (train steps: MPN faster, PGM slower), so the
  # CPU-sized variants keep "xla" (their README AUCs were measured with it).
  c.model = dict(name="baseline", width=1.0, norm="none", upsample="conv_transpose_subpixel", dtype="float32",
                 conv="auto")
  c.optim = dict(learning_rate=1e-4, grad_clip=0.0)
  c.train = dict(batch_size=4, num_epochs=60, num_steps=0, log_every=50, checkpoint_every=500)
  c.eval = dict(batch_size=16, smooth=False, plots=True, num_error_maps=4, score_weights={"psnr": 1.0},
                out="eval")  # Results go to <workdir>/<eval.out>/.

  if arg in CPU_VARIANTS:
    dataset, steps = CPU_VARIANTS[arg]
    c.data = config_lib.data_config(dataset, size=64)
    c.model.update(width=0.25, upsample="subpixel", conv="xla")
    c.optim.learning_rate = 1e-3
    c.train.update(batch_size=8, num_epochs=0, num_steps=steps, log_every=min(100, steps // 20),
                   checkpoint_every=steps // 5)
    c.eval.batch_size = 32
  elif arg in PAPER_EPOCHS:
    c.data = config_lib.data_config(arg, size=256)
    c.train.num_epochs = PAPER_EPOCHS[arg]
  else:
    raise config_lib.ConfigError(f"unknown variant {arg!r}; use quick, ped2_cpu or one of {sorted(PAPER_EPOCHS)}")
  return c
