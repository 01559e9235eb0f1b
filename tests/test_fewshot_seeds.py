"""experiments/fewshot_seeds.py: aggregation over seeds, paired differences, markdown and plots."""

import json

import numpy as np

from experiments import fewshot_seeds


def _table(seed):
  # AUC = 0.5 + 0.01 * seed + 0.02 * K for Meta; Pre-trained 0.01 lower at K > 0 for seeds 0, 1, higher for 2.
  shots = ["0", "1", "5"]
  meta = {k: 0.5 + 0.01 * seed + 0.02 * int(k) for k in shots}
  pre = {k: meta[k] - (0.0 if k == "0" else (0.01 if seed < 2 else -0.03)) for k in shots}
  tab = {"shots": [0, 1, 5], "methods": ["meta", "finetune", "pretrained"], "support": "test_first",
         "auc": {"meta": meta, "finetune": dict(meta), "pretrained": pre},
         "reference": {"auc": 0.8 + 0.01 * seed}}
  other = json.loads(json.dumps(tab))
  other["support"] = "train_random"
  tab["by_support"] = {"train_random": other}
  return tab


def test_aggregate_markdown_and_plots(tmp_path):
  agg = fewshot_seeds.aggregate({s: _table(s) for s in (0, 1, 2)})
  assert set(agg["supports"]) == {"test_first", "train_random"}
  cell = agg["supports"]["test_first"]["auc"]["meta"]["5"]
  assert np.isclose(cell["mean"], 0.61) and np.isclose(cell["std"], 0.01) and cell["n"] == 3
  diff = agg["supports"]["train_random"]["meta_minus_pretrained"]["1"]
  assert np.allclose([diff["per_seed"][s] for s in (0, 1, 2)], [0.01, 0.01, -0.03]) and diff["positive"] == 2
  assert np.isclose(agg["reference"]["mean"], 0.81)
  assert agg["supports"]["test_first"]["methods"] == ["pretrained", "finetune", "meta"]
  text = fewshot_seeds.markdown(agg, "toy")
  assert "| Meta | 0.510 +- 0.010 | 0.530 +- 0.010 | 0.610 +- 0.010 |" in text
  assert "In-domain reference" in text and "positive in 2/3" in text
  fewshot_seeds.plot(agg, tmp_path / "auc.png", "toy")
  assert (tmp_path / "auc.png").stat().st_size > 1000
  run = tmp_path / "seed_0" / "meta"
  run.mkdir(parents=True)
  (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "meta_loss": 1.0 / s}) + "\n" for s in (1, 2, 3)))
  assert fewshot_seeds.plot_meta_loss({0: tmp_path / "seed_0", 1: tmp_path / "seed_1"}, tmp_path / "loss.png")
  assert (tmp_path / "loss.png").exists()
