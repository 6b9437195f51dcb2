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


for shape in sorted(copy):
    table(f"batch 128 x {shape}", "technique", "us / batch", copy[shape], list(tech.get(shape, {}).items()), 0, 1,
          lambda score: f"{100 * score / cnn[0]:.2f}%" if cnn else "n/a")
for shape in sorted(op_copy):
    table(f"single operations, batch 128 x {shape}", "operation", "us", op_copy[shape],
          list(ops.get(shape, {}).items()), 1, 2)
