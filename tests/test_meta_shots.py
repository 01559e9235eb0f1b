"""experiments/meta_shots.py: the drawn-K vs one-model-per-K summary and its markdown (issue 14, item 5)."""

import json

import numpy as np

from experiments import meta_shots


def _seed(seed):
  # Held-out loss after adaptation: per-K models lower at K = 1 on seeds 0, 1 only; AUC per-K 0.02 above drawn.
  def entry(k_support, loss, auc0):
    aucs = {k: auc0 + 0.01 * k for k in (0, 1, 5, 10)}
    return {"k_support": k_support, "meta_train_s_this_call": 1.0, "meta_loss": 0.01,
            "heldout_source": {k: {"before": 0.02, "after": loss} for k in (1, 5, 10)},
            "auc": {"test_first": aucs, "train_random": dict(aucs)}}

  drawn = entry([1, 5, 10], 0.010, 0.60 + 0.01 * seed)
  fixed = {k: entry(k, 0.009 if (k == 1 and seed < 2) else 0.011, 0.62 + 0.01 * seed) for k in (1, 5, 10)}
  per_k = {k: {"heldout_after_drawn": drawn["heldout_source"][k]["after"],
               "heldout_after_per_k": fixed[k]["heldout_source"][k]["after"],
               "auc_drawn": {s: drawn["auc"][s][k] for s in drawn["auc"]},
               "auc_per_k": {s: fixed[k]["auc"][s][k] for s in fixed[k]["auc"]}} for k in (1, 5, 10)}
  out = {"seed": seed, "drawn_shots": [1, 5, 10], "per_k": per_k,
         "schedules": {"drawn": drawn, **{f"fixed_{k}": fixed[k] for k in (1, 5, 10)}}}
  return json.loads(json.dumps(out))  # str keys, as read back from the JSON.


def test_summary_counts_wins_and_averages_seeds():
  seeds = {str(s): _seed(s) for s in (0, 1, 2)}
  summary = meta_shots.summarise(seeds)
  assert summary["1"]["per_k_lower_heldout_loss_seeds"] == 2
  assert summary["10"]["per_k_lower_heldout_loss_seeds"] == 0
  assert np.isclose(summary["5"]["auc_per_k_test_first"]["mean"], 0.62 + 0.01 + 0.05)
  assert np.isclose(summary["5"]["auc_drawn_test_first"]["std"], 0.01)
  text = meta_shots.markdown({"seeds": [0, 1, 2], "summary": summary, "per_seed": seeds})
  assert "| 1 | 0.01000 +- 0.00000 | 0.00967 +- 0.00115 | -3.33 +- 11.55 % | 2 of 3 |" in text
  assert "| 2 | fixed_10 | 0.640 / 0.650 / 0.690 / 0.740 |" in text
