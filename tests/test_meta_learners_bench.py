"""experiments/meta_learners_bench.py: one section re-measured, the others kept from the existing JSON."""

import json

import pytest

from experiments import meta_learners_bench


@pytest.mark.slow  # ~35-100 s: eight compilations of the adaptation and the meta step.
def test_adapted_section_rerun_keeps_the_others(tmp_path):
  out = tmp_path / "meta_learners.json"
  out.write_text(json.dumps({"memory": {"kept": 1}, "learners": {"kept": 2}, "adapted": {"old": 3}, "setup": {}}))
  got = meta_learners_bench.main(["--quick", "--sections", "adapted", "--out", str(out)])
  assert got["memory"] == {"kept": 1} and got["learners"] == {"kept": 2}
  assert list(got["adapted"]) == ["dpu", "dpu_head", "dpu_head_decoder", "all"]
  rows = got["adapted"]
  # theta grows dpu < dpu_head < dpu_head_decoder < all = every parameter.
  params = [rows[a]["params"] for a in ("dpu", "dpu_head", "dpu_head_decoder", "all")]
  assert params == sorted(params) and len(set(params)) == 4 and rows["all"]["fraction"] == 1.0
  # Second order over the whole model needs more scratch memory than over the DPU alone.
  assert rows["all"]["meta_step_temp_bytes"] > rows["dpu"]["meta_step_temp_bytes"] > 0
  setup = json.loads(out.read_text())["setup"]
  assert setup["sections_last_run"] == ["adapted"] and list(setup["by_section"]) == ["adapted"]
  with pytest.raises(SystemExit, match="--sections"):
    meta_learners_bench.main(["--quick", "--sections", "adapted,speed", "--out", str(out)])
