"""The benchmark harness compares only like-shaped rows with the PyTorch reference figures."""

import pytest

from experiments import bench


def test_meta_step_compared_only_in_the_reference_shape():
  plan = bench.make_plan(quick=True, backend="cpu", sections=["meta"], episodes=4)
  shaped = [r for r in plan if r.get("reference_shape")]
  assert [(r["config"], r["episodes"], r["k"], r["q"], r["order"]) for r in shaped] == [
      ("paper@64", 1, 2, 2, "second")]
  for row in plan:
    row = dict(row, dtype="float32")
    key = bench.reference_key(row)
    if row["section"] == "meta_step":
      assert (key is not None) == bool(row.get("reference_shape"))


def test_speedup_is_reference_over_ours_for_times_and_ours_over_reference_for_rates():
  row = dict(section="meta_step", model="mpn", config="paper@64", episodes=1, k=2, q=2, order="second",
             reference_shape=True, dtype="float32", median_s=0.37)
  bench.add_speedup(row)
  assert row["speedup_vs_pytorch_cpu"] == pytest.approx(0.74 / 0.37)
  row = dict(section="inference", model="mpn", config="paper", batch=1, dtype="float32", median_s=0.5,
             frames_per_s=2.04)
  bench.add_speedup(row)
  assert row["speedup_vs_pytorch_cpu"] == pytest.approx(2.0)
  row = dict(section="inference", model="mpn", config="paper", batch=1, dtype="bfloat16", median_s=0.5,
             frames_per_s=2.0)
  bench.add_speedup(row)
  assert "speedup_vs_pytorch_cpu" not in row  # bf16 rows are not like for like.


def test_compare_matches_rows_and_orients_the_speedup():
  from experiments import bench_compare  # pylint: disable=import-outside-toplevel
  base = dict(model="mpn", config="paper@64", dtype="float32")
  before = {"hessian": "reverse", "rows": [
      dict(base, section="inference", batch=1, median_s=0.1, frames_per_s=10.0, conv="xla"),
      dict(base, section="meta_step", episodes=1, k=2, q=2, order="second", median_s=0.4, conv="xla",
           hessian="reverse"),
      dict(base, section="adapt_k1", batch=1, error="boom")]}
  after = {"hessian": "forward", "rows": [
      dict(base, section="inference", batch=1, median_s=0.025, frames_per_s=40.0, conv="auto"),
      dict(base, section="meta_step", episodes=1, k=2, q=2, order="second", median_s=0.2, conv="auto",
           hessian="forward"),
      dict(base, section="meta_step", episodes=4, k=1, q=1, order="second", median_s=0.2, conv="auto"),
      dict(base, section="adapt_k1", batch=1, median_s=0.05, conv="auto")]}
  rows = bench_compare.compare(before, after)
  assert [(r["what"], round(r["speedup"], 6)) for r in rows] == [
      ("inference batch 1", 4.0), ("meta step (second, E=1, K=2, Q=2)", 2.0)]
  assert rows[1]["before_options"] == "conv=xla, hessian=reverse"
  assert "4.00x" in bench_compare.markdown(rows)
