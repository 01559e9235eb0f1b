"""Before/after table of two `experiments/bench.py` JSONs (e.g. a fast path off, then on).

Rows are matched on what they measure (section, model, config, batch or episode shape, order, dtype);
the speed-up is before / after for times and after / before for rates (> 1: "after" is faster).

Usage:
  .venv/bin/python experiments/bench_compare.py BEFORE.json AFTER.json [--out table.md]
"""

from __future__ import annotations

import argparse
import json
import pathlib

KEY_FIELDS = ("section", "model", "config", "batch", "episodes", "k", "q", "order", "dtype")


def row_key(row: dict) -> tuple:
  return tuple(row.get(f) for f in KEY_FIELDS)


def _describe(row: dict) -> str:
  if row["section"] == "meta_step":
    return f"meta step ({row['order']}, E={row['episodes']}, K={row['k']}, Q={row['q']})"
  if row["section"] == "inference":
    return f"inference batch {row['batch']}"
  if row["section"] == "adapt_k1":
    return "K = 1 adaptation"
  return f"{row['section']} batch {row.get('batch', '-')}"


def _value(row: dict) -> str:
  if "frames_per_s" in row:
    return f"{row['frames_per_s']:.2f} frames/s"
  return f"{row['median_s'] * 1e3:.1f} ms"


def _options(report: dict, row: dict) -> str:
  opts = [f"conv={row['conv']}"] if "conv" in row else []
  if row["section"] == "meta_step":
    opts.append(f"hessian={row.get('hessian', report.get('hessian', 'reverse'))}")
  return ", ".join(opts)


def compare(before: dict, after: dict) -> list[dict]:
  """Rows present in both reports with a timing, in ``after``'s order."""
  old = {row_key(r): r for r in before["rows"] if "median_s" in r}
  out = []
  for new in after["rows"]:
    prev = old.get(row_key(new))
    if prev is None or "median_s" not in new:
      continue
    speedup = (new["frames_per_s"] / prev["frames_per_s"] if "frames_per_s" in new
               else prev["median_s"] / new["median_s"])
    out.append(dict(what=_describe(new), model=new["model"], config=new["config"], dtype=new["dtype"],
                    before=_value(prev), before_options=_options(before, prev), after=_value(new),
                    after_options=_options(after, new), speedup=speedup))
  return out


def markdown(rows: list[dict]) -> str:
  lines = ["| model | config | what | before | after | speed-up |", "|---|---|---|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['model']} | {r['config']} | {r['what']} | {r['before']} ({r['before_options']}) | "
                 f"{r['after']} ({r['after_options']}) | {r['speedup']:.2f}x |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("before")
  parser.add_argument("after")
  parser.add_argument("--out", default=None, help="also write the markdown table here")
  args = parser.parse_args(argv)
  reports = []
  for path in (args.before, args.after):
    try:
      reports.append(json.loads(pathlib.Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as e:
      parser.error(f"cannot read benchmark JSON {path}: {e}")
  table = markdown(compare(*reports))
  print(table)
  if args.out:
    pathlib.Path(args.out).write_text(table + "\n")
  return table


if __name__ == "__main__":
  main()
