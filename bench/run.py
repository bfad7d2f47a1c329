"""Run the benchmarks: `python bench/run.py [NAME ...]` (all by default).

Each benchmark is a module `bench/bench_<name>.py` with a `run(quick: bool) -> Iterable[dict]`.
Every measurement is printed as one JSON line on stdout:
  {"bench", "metric", "value", "unit", "baseline", "baseline_value", "ratio"}
ratio = baseline time / our time (> 1: faster than the baseline), measured in the same run.
Human-readable text goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

KEYS = ("bench", "metric", "value", "unit", "baseline", "baseline_value", "ratio")


def available() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available())}")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args(argv)
    names = args.names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        mod = importlib.import_module(f"bench_{name}")
        print(f"== {name}", file=sys.stderr)
        for rec in mod.run(quick=args.quick):
            line = {k: rec.get(k) for k in KEYS}
            line["bench"] = line["bench"] or name
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
