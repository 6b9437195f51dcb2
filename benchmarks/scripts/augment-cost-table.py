#!/usr/bin/env python3
"""Turns the JMH JSON of AugmentCostBenchmark and AugmentOpCostBenchmark into the Markdown tables of
docs/results/augment-cost.md.

Usage: benchmarks/scripts/augment-cost-table.py benchmarks/target/jmh-result.json
Prints, per sample shape, each technique's mean microseconds per batch (with JMH's 99.9% error) and its fastest
iteration, the ratios of both to the copy baseline of the same shape and run, and the mean's share of one cnn
training step measured in the same run. Rows of AugmentOpCostBenchmark (single operations) get the same columns
but the cnn share, in a table of their own.
"""
import json
import sys

rows = json.load(open(sys.argv[1]))
copy, tech, cnn = {}, {}, None
op_copy, ops = {}, {}
for r in rows:
    cls, name = r["benchmark"].rsplit(".", 2)[1:]
    params = r.get("params", {})
    metric = r["primaryMetric"]
    # The fastest iteration is the least disturbed by other work on a shared machine; report it beside the mean.
    best = min(v for fork in metric["rawData"] for v in fork)
    # JMH writes the error as the string "NaN" when a run has a single iteration.
    value = (metric["score"], float(metric["scoreError"]), best)
    if cls == "AugmentOpCostBenchmark":
        if name == "copyBaseline":
            op_copy[params["shape"]] = value
        else:
            ops.setdefault(params["shape"], {})[name] = value
    elif name == "copyBaseline":
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
for shape in sorted(op_copy):
    base, base_best = op_copy[shape][0], op_copy[shape][2]
    print(f"### single operations, batch 128 x {shape}\n")
    print("| operation | mean us (± 99.9% error) | x copy (mean) | fastest iteration, us | x copy (fastest) |")
    print("|---|---:|---:|---:|---:|")
    for op, (score, err, best) in [("copy baseline", op_copy[shape])] + list(ops.get(shape, {}).items()):
        print(f"| {op} | {score:.1f} ± {err:.1f} | {score / base:.2f} | {best:.1f} | {best / base_best:.2f} |")
    print()
