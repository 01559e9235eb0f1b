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


def test_meta_row_aucs_scores_both_protocols_on_a_tiny_model():
  """The helper's Meta row: every K for both protocols, K = 0 shared, equal to fewshot_table's own."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxvad import config_lib, models  # pylint: disable=import-outside-toplevel
  from jaxvad.data import synthetic  # pylint: disable=import-outside-toplevel
  from jaxvad.meta import core, fewshot  # pylint: disable=import-outside-toplevel
  from tests.test_fewshot import TINY  # pylint: disable=import-outside-toplevel
  cfg = config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY)
  mdef = models.build(cfg.model)
  params = mdef.module.init(jax.random.PRNGKey(0), jax.numpy.zeros((1, 4, 16, 16, 3)))["params"]
  theta, frozen = core.split_params(params)
  alpha = core.init_alpha(theta, 1e-1)
  bench = synthetic.make_benchmark(size=16, num_scenes=1, frames_per_video=30, train_videos_per_scene=1,
                                   test_videos_per_scene=2)
  adapter = fewshot.Adapter(mdef, cfg.model, frozen)
  aucs = meta_shots.meta_row_aucs(cfg, adapter, theta, alpha, bench["testing"], bench["training"],
                                  ("test_first", "train_random"))
  assert set(aucs) == {"test_first", "train_random"} and list(aucs["test_first"]) == [0, 1, 3]
  assert aucs["test_first"][0] == aucs["train_random"][0]
  assert aucs["test_first"][3] != aucs["train_random"][3]  # Different shots: the protocol really reached the table.
  ref = fewshot.fewshot_table(adapter, theta, alpha, bench["testing"], t=cfg.data.t, shots=cfg.fewshot.shots,
                              methods=("meta",), batch_size=cfg.fewshot.batch_size,
                              score_weights=dict(cfg.eval.score_weights), progress=False)
  assert aucs["test_first"] == {int(k): v for k, v in ref["auc"]["meta"].items()}
