"""The benchmark harness: bench.py has only jaxvad's figures; side_by_side.py's ratios and its two sides."""

import json
import os
import pathlib

import pytest

from experiments import bench
from experiments import cpu_info
from experiments import side_by_side as sbs

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_bench_has_no_reference_pytorch_figures():
  source = (REPO / "experiments" / "bench.py").read_text()
  for name in ("REFERENCE_PYTORCH", "reference_pytorch", "speedup_vs_pytorch", "add_speedup", "reference_key"):
    assert name not in source
  assert not hasattr(bench, "REFERENCE_PYTORCH_CPU")
  row = dict(section="inference", model="mpn", config="paper", batch=1, dtype="float32", median_s=0.5,
             frames_per_s=2.0, image_size=[256, 256], compile_s=1.0)
  header, _, line = bench.summary_table([row]).splitlines()
  assert "PyTorch" not in header and line.count("|") == header.count("|")


def _torch_json(times):
  """A fake peer-harness JSON with the given median times."""
  return {"torch_version": "9.9", "infer": {"b1": {"median_s": times["infer_b1"], "samples_s": [times["infer_b1"]]},
                                             "b4": {"median_s": times["infer_b4"], "samples_s": [times["infer_b4"]]}},
          "train": {"median_s": times["train_b4"], "samples_s": [times["train_b4"], 2 * times["train_b4"]]},
          "tta": {"median_s": times["adapt_k1"]}, "meta": {"median_s": times["meta"]}}


def test_side_by_side_ratios_from_fake_timings():
  torch_r = [dict(infer_b1=0.10, infer_b4=0.40, train_b4=1.0, adapt_k1=0.20, meta=2.0),
             dict(infer_b1=0.12, infer_b4=0.40, train_b4=1.2, adapt_k1=0.20, meta=2.0),
             dict(infer_b1=0.14, infer_b4=0.40, train_b4=1.4, adapt_k1=0.20, meta=2.0)]
  jax_r = [dict(infer_b1=0.05, infer_b4=0.20, train_b4=2.0, adapt_k1=0.10, meta=1.0),
           dict(infer_b1=0.04, infer_b4=0.20, train_b4=2.4, adapt_k1=0.10, meta=1.0),
           dict(infer_b1=0.06, infer_b4=0.20, train_b4=2.8, adapt_k1=0.10, meta=4.0)]
  rounds = []
  for i, (t, j) in enumerate(zip(torch_r, jax_r)):
    worker = {"parts": {p: {"median_s": v, "samples_s": [v]} for p, v in j.items()}}
    rounds.append({"round": i, "size": 64, "torch": sbs.part_times("torch", _torch_json(t)),
                   "jaxvad": sbs.part_times("jaxvad", worker)})
  rows = {r["part"]: r for r in sbs.summarize(rounds, [64, 256], list(sbs.PARTS))}
  assert set(rows) == set(sbs.PARTS)  # Nothing at 256: no rows for it.
  b1 = rows["infer_b1"]
  assert b1["torch"]["median_s"] == pytest.approx(0.12) and b1["jaxvad"]["median_s"] == pytest.approx(0.05)
  assert b1["ratio"] == pytest.approx(0.12 / 0.05)
  assert b1["torch"]["frames_per_s"] == pytest.approx(1 / 0.12)
  assert b1["round_ratios"] == pytest.approx([2.0, 3.0, 0.14 / 0.06])
  assert b1["torch"]["spread_pct"] == pytest.approx(100 * 0.04 / 0.12)
  assert rows["infer_b4"]["jaxvad"]["frames_per_s"] == pytest.approx(20.0)
  assert rows["train_b4"]["ratio"] == pytest.approx(0.5)  # jaxvad slower: the ratio is below 1.
  assert rows["train_b4"]["torch"]["samples_s"] == pytest.approx([1.0, 2.0, 1.2, 2.4, 1.4, 2.8])
  assert rows["adapt_k1"]["ratio"] == pytest.approx(2.0)
  assert rows["meta"]["ratio"] == pytest.approx(2.0)  # Median of rounds, not mean (4.0 is an outlier).
  table = sbs.markdown(sbs.summarize(rounds, [64], list(sbs.PARTS)))
  assert "| inference b1 | 64 | 8.33 fr/s | 20.00 fr/s | 2.40x | 2.00, 3.00, 2.33 |" in table
  assert "| train step b4 | 64 | 1.20 s | 2.40 s | 0.50x |" in table


def test_side_by_side_skips_a_part_missing_on_one_side():
  rounds = [{"round": 0, "size": 64, "torch": {"train_b4": {"median_s": 1.0, "samples_s": [1.0]}},
             "jaxvad": {}}]
  assert sbs.summarize(rounds, [64], list(sbs.PARTS)) == []
  assert sbs.part_times("torch", {"error": "exit code 1"}) == {}


def test_side_by_side_gives_both_sides_the_same_settings(tmp_path):
  args = sbs.parse_args(["--sides", "jaxvad", "--threads", "1", "--warmup", "3", "--repeats", "7",
                         "--step-warmup", "2", "--step-repeats", "4", "--parts", "infer_b4,meta"])
  args.torch_python, args.peers_src = "py", "src"
  t = sbs.torch_command(args, 64, tmp_path / "t.json")
  j = sbs.jax_command(args, 64, tmp_path / "j.json")
  for flag, value in (("--warmup", "3"), ("--repeats", "7"), ("--step-warmup", "2"), ("--step-repeats", "4")):
    assert t[t.index(flag) + 1] == value == j[j.index(flag) + 1]
  assert t[t.index("--batch") + 1] == "4" and t[t.index("--threads") + 1] == "1"
  assert t[t.index("--only") + 1] == "infer,meta,params"
  env = sbs.side_env(2, base={"PATH": "/bin"})
  assert env["MALLOC_MMAP_MAX_"] == "0" and env["MALLOC_TRIM_THRESHOLD_"] == str(2 ** 36)
  assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2" and env["PATH"] == "/bin"


def test_side_by_side_needs_the_torch_venv_for_the_torch_side(tmp_path):
  with pytest.raises(SystemExit):
    sbs.parse_args(["--torch-python", str(tmp_path / "missing"), "--peers-src", str(tmp_path)])


def test_cpu_info_reads_model_and_vector_flags(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text("processor\t: 0\nmodel name\t: Fake CPU @ 1GHz\nflags\t\t: fpu avx2 avx512f avx512_bf16 "
                  "amx_tile sse2\n\nprocessor\t: 1\nmodel name\t: Fake CPU @ 1GHz\n")
  info = cpu_info.cpu_info(str(path))
  assert info["model_name"] == "Fake CPU @ 1GHz"
  assert info["flags"] == ["amx_tile", "avx2", "avx512_bf16", "avx512f"]
  assert info["avx512"] and info["avx512_bf16"] and info["amx"]


def test_side_by_side_jaxvad_side_smoke(tmp_path):
  """The jaxvad side end to end at a tiny size (quick width), through the interleaving driver."""
  out = tmp_path / "sbs.json"
  report = sbs.main(["--sides", "jaxvad", "--sizes", "32", "--rounds", "1", "--threads", "1",
                     "--parts", "infer_b1,adapt_k1", "--warmup", "0", "--repeats", "1", "--step-warmup", "0",
                     "--step-repeats", "1", "--variant", "quick", "--out", str(out)])
  saved = json.loads(out.read_text())
  (rnd,) = saved["rounds"]
  assert set(rnd["jaxvad"]) == {"infer_b1", "adapt_k1"}, saved["processes"][0]["result"]
  assert all(v["median_s"] > 0 for v in rnd["jaxvad"].values())
  assert saved["versions"]["jax"] and saved["cpu"]["logical_cpus"] == os.cpu_count()
  assert saved["env_both_sides"]["MALLOC_MMAP_MAX_"] == "0" and report["rows"] == []  # One side: no ratios.
  worker = saved["processes"][0]["result"]
  assert worker["environment"]["affinity_cpus"] == 1 and "cpu" in worker["environment"]


@pytest.mark.slow
def test_side_by_side_torch_side_smoke(tmp_path):
  """Both sides at 32x32; skipped unless JAXVAD_TORCH_PYTHON and JAXVAD_PEERS_SRC name a built $PEERS."""
  py, src = os.environ.get("JAXVAD_TORCH_PYTHON"), os.environ.get("JAXVAD_PEERS_SRC")
  if not (py and src and pathlib.Path(py).exists() and pathlib.Path(src).exists() and sbs.DEFAULT_HARNESS.exists()):
    pytest.skip("no torch venv / official MPN source (set JAXVAD_TORCH_PYTHON, JAXVAD_PEERS_SRC)")
  out = tmp_path / "sbs.json"
  report = sbs.main(["--sizes", "32", "--rounds", "1", "--threads", "1", "--parts", "infer_b1", "--warmup", "0",
                     "--repeats", "1", "--out", str(out)])
  (row,) = report["rows"]
  assert row["ratio"] == pytest.approx(row["torch"]["median_s"] / row["jaxvad"]["median_s"])
  assert report["versions"]["torch"] and report["peer_params"]["total"] > 0


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
