"""MPN, unsupervised: the frame-prediction autoencoder with a Dynamic Prototype Unit (SPEC 3.1-3.4).

Every variant is the matching `configs/baseline.py` variant (same data, optimiser,
schedule and evaluation) with the model swapped for MPN and the score
S = S_fra + lambda_s S_fea (``eval.score_weights = {"psnr": 1, "feature_error": 1}``,
MPN Sec. 3.4) except where a table reports one score. Loss weights: lambda1 = 1, gamma = 1,
lambda2 = 0.01 (paper; the reference code uses 1e-4). Every field is pinned to the paper's tables by
tests/test_config_table.py. Deviations from the paper, with their evidence, in docs/mpn.md:

* L_c weighting, one rule for every variant: the reference code's mean over channels (its MSELoss),
  taken over the channels the DPU has at the paper width (``compactness="mean"``,
  ``compactness_channels`` = 128 for plug 1 and 2, 256 for plug 4, 512 for plug 8). At width 1.0 this is
  the reference exactly; at width 0.25 it keeps the reference's weight per unit-norm feature. The paper's
  sum over channels (``--set model.compactness=sum``) is 128x stronger at C = 128: at the paper width
  (64x64 Ped2, 140 steps) it left the frame loss 2x higher (l_fra 0.0078 against 0.0037), l_d 0.57
  against 0.09 and 4.9 prototypes in use against 7.0 (experiments/results/probe_mpn_paper_width.json);
  on Ped2 at width 0.25 the reference weight was worth 2 points of AUC.
* DPU attention init ``model.attention_init_std = 3.0`` (a jaxvad choice; the papers do not say): with
  the default LeCun / PyTorch init the attention logits on unit-norm features have std ~1/sqrt(C), the
  softmax over the N positions starts almost uniform and all M prototypes start as the mean feature
  (L_d = 0.99 at init on Ped2), where L_d's hinge has no gradient: the prototypes never separate. The
  logits' scale does not depend on C (unit-norm features), so one std serves every width; checked at
  C = 128 with N = 4,096 and N = 65,536 (docs/mpn.md). ``--set model.attention_init_std=None`` restores
  the reference init.

Variants (``get_config(arg)``). Runtimes on one A100-class GPU are estimates, not measurements (nothing
here was run on a GPU), scaled from the baseline's Ped2 estimate by training frames x epochs:
  quick      synthetic scenes, 64x64, width 0.25, subpixel upsampling: the demo.
             ~6 min on 2 CPU cores (500 steps; 20 steps took ~25 s on a loaded 2-core CPU).
             jaxvad train --config configs/mpn.py:quick --workdir runs/mpn_quick
  ped2_cpu   real UCSD Ped2, 64x64, width 0.25: the CPU-sized check (README's MPN table), 5,000 steps,
             ~9 min on 2 CPU cores.
             JAXVAD_DATA=../shared/data jaxvad run --config configs/mpn.py:ped2_cpu --workdir runs/mpn_ped2_cpu
  Table 1 (with DPU: Ped1 85.1, Ped2 96.9, Avenue 89.5, ShanghaiTech 73.8 AUC %; FP & FR score):
  ped1 | ped2 | avenue | shanghaitech
             256x256, full width, 3x3 transposed-conv upsampling (computed by its exact
             sub-pixel decomposition, `conv_transpose_subpixel`), M = 10, DPU at 1/1,
             Adam 1e-4, batch 4, 60 / 60 / 60 / 10 epochs.
             jaxvad run --config configs/mpn.py:ped2 --workdir runs/mpn_ped2
             ~2 h (ped2), ~5.5 h (ped1), ~12 h (avenue), ~36 h (shanghaitech) (estimates).
             Without DPU (Table 1's AE figures) on any data set: ``--set model.use_dpu=False``; the
             feature score then does not exist and evaluation scores with PSNR alone (results.json
             records ``score_weights_absent``).
  Table 4 (ablation on Ped2; Table 1 gives AE w/o DPU 95.1): AE, and the FP / FR / FP&FR score rows:
  ped2_ae    use_dpu = False, PSNR score only: the "AE w/o DPU" row. ~2 h.
             jaxvad run --config configs/mpn.py:ped2_ae --workdir runs/mpn_ped2_ae
  ped2_fp | ped2_fr | ped2
             one trained model scored three ways: frame prediction only ({"psnr": 1}),
             feature reconstruction only ({"feature_error": 1}), both (the default). Train
             once with ``ped2``, then evaluate the same work directory with the other
             variants (``jaxvad evaluate --config configs/mpn.py:ped2_fr --workdir runs/mpn_ped2``
             writes runs/mpn_ped2/eval_fr/ beside eval/; eval/scores.npz also keeps both
             per-frame scores, so all three rows can be recomputed from one evaluation).
  Table 5 (DPU plug point on Ped2, FR score): ped2_plug1 | ped2_plug2 | ped2_plug4 | ped2_plug8
             the DPU after the decoder stage at 1/1, 1/2, 1/4, 1/8 resolution. ``ped2_plug1`` is the
             ``ped2`` model scored FR (evaluate runs/mpn_ped2 with it: eval_fr/). ~2 h each.
             jaxvad run --config configs/mpn.py:ped2_plug4 --workdir runs/mpn_ped2_plug4
  Table 6 (number of prototypes on Ped2, FR and FP rows): ped2_m<M> | ped2_m<M>_fr | ped2_m<M>_fp,
             M = 1, 5, 10, 20, 40. ``ped2_m<M>`` trains and reports the FR row (eval/);
             ``_fr`` / ``_fp`` evaluate the same work directory into eval_fr/ / eval_fp/. ~2 h each.
             jaxvad run --config configs/mpn.py:ped2_m20 --workdir runs/mpn_ped2_m20
             jaxvad evaluate --config configs/mpn.py:ped2_m20_fp --workdir runs/mpn_ped2_m20
"""

import ml_collections

from jaxvad import config_lib

BASE_VARIANTS = ("quick", "ped2_cpu", "ped1", "ped2", "avenue", "shanghaitech")
FP, FR = {"psnr": 1.0}, {"feature_error": 1.0}
BOTH = {"psnr": 1.0, "feature_error": 1.0}
# Table 4 score rows: eval.score_weights of one trained Ped2 model.
SCORE_ROWS = {"ped2_fp": FP, "ped2_fr": FR}
PLUGS = {f"ped2_plug{p}": p for p in (2, 4, 8)}  # Table 5 (FR score; ``ped2_plug1`` = ped2 scored FR).
PROTOTYPES = {f"ped2_m{m}": m for m in (1, 5, 10, 20, 40)}  # Table 6 (FR and FP rows).
# L_c weighting, one rule for every variant: the reference code's mean over the DPU's channels at the
# paper width (its MSELoss), i.e. the sum of Eq. 6 divided by the channel count of the decoder stage the
# DPU reads at width 1.0. At width 1.0 this is exactly the reference; at width 0.25 it keeps the
# reference's weight per unit-norm feature. Plug point -> channels at width 1.0 (`models.mpn`).
PAPER_CHANNELS = {1: 128, 2: 128, 4: 256, 8: 512}
# DPU attention kernel init std (a jaxvad choice, docs/mpn.md): chosen from the training metrics of
# experiments/config_probe.py (mpn) at C = 128 and of the ped2_cpu runs at C = 32.
ATTENTION_INIT_STD = 3.0
VARIANTS = (*BASE_VARIANTS, "ped2_ae", *SCORE_ROWS, "ped2_plug1", *PLUGS,
            *(f"{m}{s}" for m in PROTOTYPES for s in ("", "_fp", "_fr")))  # Every name get_config accepts.


def _table6(arg: str):
  """ped2_m<M>[_fp|_fr] -> (M, "fp" | "fr" | None), or None for other names."""
  name, _, row = arg.rpartition("_") if arg.endswith(("_fp", "_fr")) else (arg, "", "")
  return (PROTOTYPES[name], row or None) if name in PROTOTYPES else None


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
  table6 = _table6(arg)
  if arg in BASE_VARIANTS:
    base = arg
  elif arg == "ped2_ae" or arg in SCORE_ROWS or arg in PLUGS or arg == "ped2_plug1" or table6:
    base = "ped2"
  else:
    raise config_lib.ConfigError(f"unknown variant {arg!r}; use one of {list(VARIANTS)}")
  c = config_lib.load_config(f"configs/baseline.py:{base}")
  c.model.update(name="mpn", use_dpu=True, plug=1, num_prototypes=10,
                 lambda1=1.0, lambda2=0.01, gamma=1.0, compactness="mean",
                 compactness_channels=PAPER_CHANNELS[1], attention_init_std=ATTENTION_INIT_STD)
  c.eval.score_weights = dict(BOTH)

  if arg == "ped2_ae":
    c.model.use_dpu = False
    c.eval.score_weights = dict(FP)
  elif arg in SCORE_ROWS:
    c.eval.score_weights = dict(SCORE_ROWS[arg])
    c.eval.out = f"eval_{arg.split('_')[1]}"  # Beside eval/ of the same trained model.
  elif arg in PLUGS or arg == "ped2_plug1":
    c.model.plug = PLUGS.get(arg, 1)
    c.model.compactness_channels = PAPER_CHANNELS[c.model.plug]
    c.eval.score_weights = dict(FR)
    if arg == "ped2_plug1":
      c.eval.out = "eval_fr"  # Table 5's 1/1 column: the ped2 model scored FR.
  elif table6:
    m, row = table6
    c.model.num_prototypes = m
    c.eval.score_weights = dict(FP if row == "fp" else FR)
    if row:
      c.eval.out = f"eval_{row}"
  return c
