"""Does longer meta-training help? Continues a finished `jaxvad meta` workdir's meta-training and re-score (issue 14).

Copy a seed's ``pretrain``, ``meta`` and ``config.json`` into a new folder, then this resumes meta-training there to
``STEPS`` (same config otherwise), logs the meta loss to ``meta/metrics.jsonl`` and scores the Meta row at the
config's K for both support protocols (reads Ped2 test labels: a finding, never a choice). Writes ``WORKDIR/longer.json``.

Usage:
  mkdir -p runs/longer/seed_0 && cp -r runs/fewshot_seeds/real_ped2/seed_0/{pretrain,meta,config.json} runs/longer/seed_0/
  JAXVAD_DATA=../shared/data python experiments/meta_longer.py runs/longer/seed_0 900
"""

import copy
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from jaxvad import run_record  # noqa: E402
from jaxvad.data import multisource, sources  # noqa: E402
from experiments import meta_shots  # noqa: E402
from jaxvad.meta import finetune_select, protocol  # noqa: E402
from jaxvad.meta import train as meta_train_lib  # noqa: E402
from jaxvad.utils import atomic_write_json  # noqa: E402


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  wd, steps = pathlib.Path(argv[0]), int(argv[1])
  config = run_record.load(wd)
  if config is None:
    raise SystemExit(f"{wd} has no config.json: copy a finished workdir's config.json, pretrain and meta first")
  source = multisource.load(config.data, "training", progress=False)
  source, _ = finetune_select.holdout_tail(source, float(config.fewshot.select.val_fraction))  # As the run did.
  target = sources.load(config.target, "testing", progress=False)
  target_train = sources.load(config.target, "training", progress=False)
  params = meta_train_lib.load_pretrained(config, wd)
  cfg = copy.deepcopy(config)
  cfg.meta.num_steps = steps
  t0 = time.perf_counter()
  theta, alpha, frozen = meta_train_lib.meta_train(cfg, wd, source, params, progress=False)
  out = {"steps": steps, "meta_train_s": time.perf_counter() - t0}
  lines = [json.loads(x) for x in (wd / "meta" / "metrics.jsonl").read_text().splitlines() if x.strip()]
  out["meta_loss"] = {r["step"]: r["meta_loss"] for r in lines}
  adapter = protocol._adapter(cfg, frozen)  # pylint: disable=protected-access
  for support, aucs in meta_shots.meta_row_aucs(cfg, adapter, theta, alpha, target, target_train,
                                                ("test_first", "train_random")).items():
    out[support] = aucs
    print(support, aucs, flush=True)
  atomic_write_json(wd / "longer.json", out, indent=1)


if __name__ == "__main__":
  main()
