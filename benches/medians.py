#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion, as `name<TAB>ns`.

criterion's console line shows a mean estimate; BENCHMARKS.md quotes medians, which the shared,
noisy machines this project runs on distort less. Usage: python3 benches/medians.py [filter]
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
wanted = sys.argv[1] if len(sys.argv) > 1 else ""
for estimates in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((estimates.parent / "benchmark.json").read_text())
    name = bench.get("full_id") or bench.get("title")
    if wanted in name:
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        print(f"{name}\t{median:.0f}")
