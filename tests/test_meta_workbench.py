"""experiments/meta_workbench.py: the meta-learner x adapted-set summary, its markdown and the merge of runs."""

import json

import numpy as np

from experiments import meta_workbench


def _entry(auc0, seconds):
  aucs = {k: auc0 + 0.01 * k for k in (0, 1, 5, 10)}
  return {"learner": "x", "adapted": "y", "meta_train_s_this_call": seconds, "meta_loss": 0.01, "theta_params": 1234,
          "heldout_source": {k: {"before": 0.02, "after": 0.01} for k in (1, 5, 10)},
          "auc": {"test_first": aucs, "train_random": dict(aucs)}}


def _json(x):
  return json.loads(json.dumps(x))


def test_summary_markdown_and_merge(tmp_path):
  a = {"per_seed": {"0": {"maml:dpu_head": _entry(0.60, 10.0)}, "1": {"maml:dpu_head": _entry(0.62, 30.0)}}}
  b = {"per_seed": {"0": {"meta_sgd:all": _entry(0.70, 50.0), "maml:dpu_head": _entry(0.99, 1.0)}}}
  (tmp_path / "a.json").write_text(json.dumps(_json(a)))
  (tmp_path / "b.json").write_text(json.dumps(_json(b)))
  out = tmp_path / "merged"
  meta_workbench.main(["--merge", f"{tmp_path / 'a.json'},{tmp_path / 'b.json'}", "--out", str(out)])
  res = json.loads(out.with_suffix(".json").read_text())
  assert res["per_seed"]["0"]["maml:dpu_head"]["auc"]["test_first"]["0"] == 0.60  # The first file wins a duplicate.
  summary = res["summary"]
  assert summary["maml:dpu_head"]["seeds"] == 2 and summary["meta_sgd:all"]["seeds"] == 1
  cell = summary["maml:dpu_head"]["test_first"]["10"]
  assert np.isclose(cell["mean"], 0.71) and np.isclose(cell["std"], np.std([0.70, 0.72], ddof=1))
  assert np.isclose(summary["maml:dpu_head"]["meta_train_s"], 20.0)
  text = out.with_suffix(".md").read_text()
  assert "| maml | dpu_head | 2 | 0.610 +- 0.014 / 0.620 +- 0.014 / 0.660 +- 0.014 / 0.710 +- 0.014 |" in text
  assert "| meta_sgd | all | 1 | 0.700 / 0.710 / 0.750 / 0.800 |" in text
  assert "| 0 | meta_sgd:all | 0.02000 -> 0.01000 | 0.02000 -> 0.01000 | 1,234 |" in text
