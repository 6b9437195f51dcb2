#!/usr/bin/env python3
"""Turns the JMH JSON of AugmentCostBenchmark and AugmentOpCostBenchmark into the Markdown tables of
docs/results/augment-cost.md.

Usage: benchmarks/scripts/augment-cost-table.py benchmarks/target/jmh-result.json
Prints, per sample shape, each technique's mean microseconds per batch (with JMH's 99.9% error) and its fastest
iteration, the ratios of both to the copy baseline of the same shape and run, and the mean's share of one cnn
training step measured in the same run. Rows of AugmentOpCostBenchmark (single operations) get the same columns
but the cnn share, in a table of their own.

A run with a tiny batch beside the full one (JMH's -p batch=2,128 -p shape=1x8x8,1x28x28,3x32x32) also gets a table
of each technique's fixed cost: its fastest iteration on the tiny batch, where next to no data moves, as a multiple of
the batch-128 copy of each full-size shape of the same run.
"""
import json
import sys

rows = json.load(open(sys.argv[1]))
copy, tech, cnn = {}, {}, None
op_copy, ops = {}, {}
for r in rows:
    cls, name = r["benchmark"].rsplit(".", 2)[1:]
    params = r.get("params", {})
    # Runs from before the batch parameter existed were all at batch 128.
    key = (int(params.get("batch", 128)), params.get("shape"))
    metric = r["primaryMetric"]
    # The fastest iteration is the least disturbed by other work on a shared machine; report it beside the mean.
    best = min(v for fork in metric["rawData"] for v in fork)
    # JMH writes the error as the string "NaN" when a run has a single iteration.
    value = (metric["score"], float(metric["scoreError"]), best)
    if cls == "AugmentOpCostBenchmark":
        if name == "copyBaseline":
            op_copy[key] = value
        else:
            ops.setdefault(key, {})[name] = value
    elif name == "copyBaseline":
        copy[key] = value
    elif name == "augment":
        tech.setdefault(key, {})[params["id"]] = value
    elif name == "cnnStep":
        cnn = value
if cnn:
    print(f"cnn training step (batch 128, 1x28x28): mean {cnn[0]:.0f} ± {cnn[1]:.0f} us, fastest iteration"
          f" {cnn[2]:.0f} us\n")


def table(title, label, unit, baseline, entries, time_digits, ratio_digits, share=None):
    """One Markdown table: each entry's mean (with error) and fastest iteration, both as ratios to the baseline's,
    and, when share is given, a last column with share(mean)."""
    base, base_best = baseline[0], baseline[2]
    print(f"### {title}\n")
    header = f"| {label} | mean {unit} (± 99.9% error) | x copy (mean) | fastest iteration, us | x copy (fastest) |"
    print(header + (" % of a cnn step (means) |" if share else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|" if share else ""))
    t, r = time_digits, ratio_digits
    for name, (score, err, best) in [("copy baseline", baseline)] + entries:
        row = (f"| {name} | {score:.{t}f} ± {err:.{t}f} | {score / base:.{r}f} | {best:.{t}f}"
               f" | {best / base_best:.{r}f} |")
        print(row + (f" {share(score)} |" if share else ""))
    print()


for batch, shape in sorted(copy):
    table(f"batch {batch} x {shape}", "technique", "us / batch", copy[batch, shape],
          list(tech.get((batch, shape), {}).items()), 0, 1,
          lambda score: f"{100 * score / cnn[0]:.2f}%" if cnn else "n/a")
for batch, shape in sorted(op_copy):
    table(f"single operations, batch {batch} x {shape}", "operation", "us", op_copy[batch, shape],
          list(ops.get((batch, shape), {}).items()), 1, 2)

full = sorted(shape for batch, shape in copy if batch == 128)
for batch, shape in sorted(k for k in tech if k[0] < 128):
    print(f"### fixed cost: batch {batch} x {shape} against the batch-128 copy\n")
    print("| technique | fastest iteration, us | " + " | ".join(f"x copy of 128 x {s}" for s in full) + " |")
    print("|---|---:|" + "---:|" * len(full))
    for name, value in [("copy baseline", copy[batch, shape])] + list(tech[batch, shape].items()):
        print(f"| {name} | {value[2]:.1f} | " + " | ".join(f"{value[2] / copy[128, s][2]:.2f}" for s in full) + " |")
    print()
