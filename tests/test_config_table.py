"""Table of truth: every variant of configs/*.py against the papers' tables (issue 15).

The expected values are written out here, from the papers (MPN: Lv et al., CVPR 2021, Sec. 4.1 and
Tables 1, 2, 4, 5, 6; PGM: Huang et al., Sec. III-E and Tables I, II, IV) and from the documented
project choices (docs/mpn.md, docs/pgm.md: L_c weighting, attention init, memory update rule, PGM's
60 epochs). A config change that moves a variant away from its table row fails here with the field
named; a new variant fails until it has a row.
"""

import importlib.util
import pathlib

import pytest

from jaxvad import config_lib

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"

FP, FR, FP_FR = {"psnr": 1.0}, {"feature_error": 1.0}, {"psnr": 1.0, "feature_error": 1.0}
PGM_SCORE = {"psnr": 0.6, "memory_distance": 0.4}  # PGM Eq. 25, gamma = 0.6.

# Training set-ups. Paper: 256x256, width 1.0, t = 4, batch 4; MPN and the AE Adam 1e-4, 60 epochs
# (ShanghaiTech 10); PGM Adam 2e-4, 60 epochs (a choice: the paper gives none). CPU variants: 64x64,
# width 0.25, Adam 1e-3, batch 8, fixed steps.
MPN_EPOCHS = {"ped1": 60, "ped2": 60, "avenue": 60, "shanghaitech": 10}


def _paper(dataset, lr, epochs):
  return dict(dataset=dataset, size=(256, 256), width=1.0, t=4, lr=lr, batch=4, epochs=epochs, steps=0)


def _cpu(dataset, steps):
  return dict(dataset=dataset, size=(64, 64), width=0.25, t=4, lr=1e-3, batch=8, epochs=0, steps=steps)


CPU_RUNS = {"quick": _cpu("synthetic", 500), "ped2_cpu": _cpu("ped2", 5000)}

# --- configs/baseline.py: the "AE w/o DPU" rows (MPN Tables 1, 4), PGM Table II's baseline column.
BASELINE = {**{v: dict(run, score=FP) for v, run in CPU_RUNS.items()},
            **{d: dict(_paper(d, 1e-4, e), score=FP) for d, e in MPN_EPOCHS.items()}}

# --- configs/mpn.py. Columns: data set, M, plug, DPU on, score; loss weights lambda1 = 1, lambda2 = 0.01,
# gamma = 1 everywhere; L_c = sum of Eq. 6 / channels of the DPU's stage at width 1.0 (128, 128, 256, 512
# for plug 1, 2, 4, 8: the reference's mean); attention init std 3.
MPN_ROWS = {
    # variant        data      M  plug dpu   score   (table)
    "quick":        ("synthetic", 10, 1, True, FP_FR),
    "ped2_cpu":     ("ped2", 10, 1, True, FP_FR),
    "ped1":         ("ped1", 10, 1, True, FP_FR),    # Table 1
    "ped2":         ("ped2", 10, 1, True, FP_FR),    # Table 1, Table 4 FP&FR row
    "avenue":       ("avenue", 10, 1, True, FP_FR),  # Table 1
    "shanghaitech": ("shanghaitech", 10, 1, True, FP_FR),  # Table 1
    "ped2_ae":      ("ped2", 10, 1, False, FP),      # Table 1/4 AE w/o DPU
    "ped2_fp":      ("ped2", 10, 1, True, FP),       # Table 4 FP row
    "ped2_fr":      ("ped2", 10, 1, True, FR),       # Table 4 FR row
    "ped2_plug1":   ("ped2", 10, 1, True, FR),       # Table 5, FR score
    "ped2_plug2":   ("ped2", 10, 2, True, FR),
    "ped2_plug4":   ("ped2", 10, 4, True, FR),
    "ped2_plug8":   ("ped2", 10, 8, True, FR),
    **{f"ped2_m{m}{s}": ("ped2", m, 1, True, FP if s == "_fp" else FR)  # Table 6: FR and FP rows
       for m in (1, 5, 10, 20, 40) for s in ("", "_fp", "_fr")},
}
MPN_EVAL_OUT = {"ped2_fp": "eval_fp", "ped2_fr": "eval_fr", "ped2_plug1": "eval_fr",
                **{f"ped2_m{m}{s}": f"eval{s}" for m in (1, 5, 10, 20, 40) for s in ("_fp", "_fr")}}
MPN_PAPER_CHANNELS = {1: 128, 2: 128, 4: 256, 8: 512}

# --- configs/pgm.py. Columns: diff branch, memory, L_dis, N. N = 100, lambda_pred 1, lambda_diff 0.1,
# lambda_dis 1, both memory mechanisms on, MNAD's nearest update rule (docs/pgm.md); "_paper_update"
# variants use the paper's all-query rule (Eq. 11).
PGM_COLUMNS = {  # Table II (diff, memory, L_dis) and Table IV (N; the full model otherwise).
    "baseline": (False, False, False, 100), "diff": (True, False, False, 100),
    "mem": (False, True, False, 100), "mem_dis": (False, True, True, 100),
    "diff_mem": (True, True, False, 100),
    "n0": (True, False, False, 0), "n25": (True, True, True, 25), "n50": (True, True, True, 50),
    "n100": (True, True, True, 100), "n200": (True, True, True, 200),
}
PGM_RUNS = {**CPU_RUNS, **{d: _paper(d, 2e-4, 60) for d in ("ped2", "avenue", "shanghaitech")}}
PGM = {v: dict(run, columns=(True, True, True, 100)) for v, run in PGM_RUNS.items()}
PGM.update({f"{d}_{col}": dict(PGM_RUNS[d], columns=cols)
            for d in ("ped2", "avenue") for col, cols in PGM_COLUMNS.items()})

# --- configs/meta.py (MPN Table 2 and the CPU-sized check). Paper: 10 episodes per meta-batch, K = 1,
# 1 inner step, Adam 1e-5, alpha init 1e-6, 1000 meta epochs; pre-training as configs/mpn.py.
META_PAPER = dict(episodes=10, k_support=1, n_query=1, inner_steps=1, learning_rate=1e-5, alpha_init=1e-6,
                  num_epochs=1000, num_steps=0)
META_CPU = dict(episodes=4, k_support=5, n_query=2, inner_steps=1, learning_rate=1e-3, alpha_init=1e-2,
                num_epochs=0, num_steps=150)
META = {"synthetic": ("synthetic", "synthetic", META_CPU), "synthetic_ped2": ("synthetic", "ped2", META_CPU),
        **{f"{s}_{t}": (src, t, META_PAPER) for s, src in (("shanghaitech", "shanghaitech"), ("ucf", "ucf_crime"))
           for t in ("ped1", "ped2", "avenue")}}


def _variants(name):
  spec = importlib.util.spec_from_file_location(f"table_{name}", CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return tuple(module.VARIANTS)


def _check(spec, actual: dict, expected: dict):
  wrong = [f"{k} = {actual[k]!r}, the table says {v!r}" for k, v in expected.items() if actual[k] != v]
  assert not wrong, f"{spec}: " + "; ".join(wrong)


def _run(c) -> dict:
  return dict(dataset=c.data.dataset, size=tuple(c.data.size), width=c.model.width, t=c.data.t,
              lr=c.optim.learning_rate, batch=c.train.batch_size, epochs=c.train.num_epochs,
              steps=c.train.num_steps)


@pytest.mark.parametrize("name,table", [("baseline", BASELINE), ("mpn", MPN_ROWS), ("pgm", PGM), ("meta", META)])
def test_table_covers_every_variant(name, table):
  variants = set(_variants(name))
  if name == "pgm":  # "_paper_update" rows: one per variant with a memory, checked below.
    variants = {v for v in variants if not v.endswith("_paper_update")}
  assert variants == set(table), (f"configs/{name}.py variants without a table row: {sorted(variants - set(table))}; "
                                  f"rows without a variant: {sorted(set(table) - variants)}")


@pytest.mark.parametrize("variant", sorted(BASELINE))
def test_baseline_rows(variant):
  spec = f"configs/baseline.py:{variant}"
  c = config_lib.load_config(spec)
  row = BASELINE[variant]
  _check(spec, {**_run(c), "name": c.model.name, "score": dict(c.eval.score_weights)},
         {**row, "name": "baseline"})


@pytest.mark.parametrize("variant", sorted(MPN_ROWS))
def test_mpn_rows(variant):
  spec = f"configs/mpn.py:{variant}"
  c = config_lib.load_config(spec)
  dataset, m, plug, dpu, score = MPN_ROWS[variant]
  run = CPU_RUNS[variant] if variant in CPU_RUNS else _paper(dataset, 1e-4, MPN_EPOCHS[dataset])
  actual = {**_run(c), "name": c.model.name, "M": c.model.num_prototypes, "plug": c.model.plug,
            "use_dpu": c.model.use_dpu, "score": dict(c.eval.score_weights), "eval_out": c.eval.out,
            "lambda1": c.model.lambda1, "lambda2": c.model.lambda2, "gamma": c.model.gamma,
            "compactness": c.model.compactness, "compactness_channels": c.model.compactness_channels,
            "attention_init_std": c.model.attention_init_std}
  _check(spec, actual, {**run, "name": "mpn", "M": m, "plug": plug, "use_dpu": dpu, "score": score,
                        "eval_out": MPN_EVAL_OUT.get(variant, "eval"), "lambda1": 1.0, "lambda2": 0.01,
                        "gamma": 1.0, "compactness": "mean", "compactness_channels": MPN_PAPER_CHANNELS[plug],
                        "attention_init_std": 3.0})


@pytest.mark.parametrize("variant", sorted(PGM) + sorted(f"{v}_paper_update" for v in PGM
                                                          if PGM[v]["columns"][1] and PGM[v]["columns"][3]))
def test_pgm_rows(variant):
  spec = f"configs/pgm.py:{variant}"
  c = config_lib.load_config(spec)
  paper_update = variant.endswith("_paper_update")
  row = dict(PGM[variant.removesuffix("_paper_update")])
  use_diff, use_memory, use_dis, n = row.pop("columns")
  actual = {**_run(c), "name": c.model.name, "use_diff": c.model.use_diff, "use_memory": c.model.use_memory,
            "use_dis": c.model.use_dis, "num_items": c.model.num_items, "update_scope": c.model.update_scope,
            "rule_update": c.model.rule_update, "grad_items": c.model.grad_items,
            "lambda_pred": c.model.lambda_pred, "lambda_diff": c.model.lambda_diff,
            "lambda_dis": c.model.lambda_dis, "score": dict(c.eval.score_weights)}
  _check(spec, actual, {**row, "name": "pgm", "use_diff": use_diff, "use_memory": use_memory, "use_dis": use_dis,
                        "num_items": n, "update_scope": "all" if paper_update else "nearest",
                        "rule_update": True, "grad_items": True, "lambda_pred": 1.0, "lambda_diff": 0.1,
                        "lambda_dis": 1.0, "score": PGM_SCORE if use_memory and n else FP})


def test_pgm_paper_update_needs_a_memory():
  with pytest.raises(ValueError, match="no memory"):
    config_lib.load_config("configs/pgm.py:ped2_baseline_paper_update")


@pytest.mark.parametrize("variant", sorted(META))
def test_meta_rows(variant):
  spec = f"configs/meta.py:{variant}"
  c = config_lib.load_config(spec)
  source, target, meta = META[variant]
  actual = {"source": c.data.dataset, "target": c.target.dataset, "name": c.model.name,
            **{k: c.meta[k] for k in meta}}
  _check(spec, actual, {"source": source, "target": target, "name": "mpn", **meta})
  if meta is META_PAPER:  # Pre-training as configs/mpn.py's paper rows; both sides at the paper size.
    _check(spec, {**_run(c), "target_size": tuple(c.target.size)},
           {**_paper(source, 1e-4, MPN_EPOCHS["shanghaitech"]), "target_size": (256, 256)})


def test_meta_epoch_is_one_episode_per_source_video():
  """num_epochs > 0: ceil(videos / episodes) meta-batches per epoch (ShanghaiTech: 330 videos, 10 episodes)."""
  import types  # pylint: disable=import-outside-toplevel
  from jaxvad.meta import train as meta_train  # pylint: disable=import-outside-toplevel
  paper = config_lib.load_config("configs/meta.py:shanghaitech_ped2").meta
  split = types.SimpleNamespace(videos=[None] * 330)
  assert meta_train.num_meta_steps(paper, split) == 1000 * 33
  assert meta_train.num_meta_steps(paper, types.SimpleNamespace(videos=[None] * 331)) == 1000 * 34
  cpu = config_lib.load_config("configs/meta.py:synthetic").meta
  assert meta_train.num_meta_steps(cpu, split) == 150  # num_epochs = 0: num_steps.
