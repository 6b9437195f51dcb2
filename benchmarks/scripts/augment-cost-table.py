#!/usr/bin/env python3
"""Turns the JMH JSON of AugmentCostBenchmark into the Markdown tables of docs/results/augment-cost.md.

Usage: benchmarks/scripts/augment-cost-table.py benchmarks/target/jmh-result.json
Prints, per sample shape, each technique's mean microseconds per batch (with JMH's 99.9% error) and its fastest
iteration, the ratios of both to the copy baseline of the same shape and run, and the mean's share of one cnn
training step measured in the same run.
"""
import json
import sys

rows = json.load(open(sys.argv[1]))
copy, tech, cnn = {}, {}, None
for r in rows:
    name = r["benchmark"].rsplit(".", 1)[1]
    params = r.get("params", {})
    metric = r["primaryMetric"]
    # The fastest iteration is the least disturbed by other work on a shared machine; report it beside the mean.
    best = min(v for fork in metric["rawData"] for v in fork)
    value = (metric["score"], metric["scoreError"], best)
    if name == "copyBaseline":
        copy[params["shape"]] = value
    elif name == "augment":
        tech.setdefault(params["shape"], {})[params["id"]] = value
    elif name == "cnnStep":
        cnn = value
if cnn:
    print(f"cnn training step (batch 128, 1x28x28): mean {cnn[0]:.0f} ± {cnn[1]:.0f} us, fastest iteration"
          f" {cnn[2]:.0f} us\n")
for shape in sorted(copy):
    base = copy[shape][0]
    print(f"### batch 128 x {shape}\n")
    base_best = copy[shape][2]
    print("| technique | mean us / batch (± 99.9% error) | x copy (mean) | fastest iteration, us | x copy (fastest)"
          " | % of a cnn step (means) |")
    print("|---|---:|---:|---:|---:|---:|")
    entries = [("copy baseline", copy[shape])] + list(tech.get(shape, {}).items())
    for tid, (score, err, best) in entries:
        share = f"{100 * score / cnn[0]:.2f}%" if cnn else "n/a"
        print(f"| {tid} | {score:.0f} ± {err:.0f} | {score / base:.1f} | {best:.0f} | {best / base_best:.1f}"
              f" | {share} |")
    print()
