#!/usr/bin/env python3
"""Counts the native (JNI) calls that one call of each plugins-mixup technique makes, against the copy baseline.

Unlike a timing, the count is exact and the same on a busy machine as on a quiet one. It needs root, Linux uprobes
and `perf` (Debian's linux-perf): a probe is put on every JNI function of DJL's PyTorch library
(libdjl_torch.so in DJL's cache), the count mode of TechniqueRuns.java runs each technique with 0 and with N calls
after the same warm-up under `perf stat`, and the difference divided by N is one call's count, function by function.
The probes are removed at the end.

Usage (from the repository root, plugins-mixup built):
  ./mvnw -B -q dependency:build-classpath -pl plugins-mixup -Dmdep.outputFile=/tmp/mixup-cp.txt
  sudo python3 benchmarks/scripts/native-calls.py --classpath "$(cat /tmp/mixup-cp.txt):plugins-mixup/target/classes"
Prints a Markdown table: total calls per technique call, and the functions called most.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

GROUP = "kilnjni"
PREFIX = "Java_ai_djl_pytorch_jni_PyTorchLibrary_"
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "TechniqueRuns.java")


def library():
    found = sorted(glob.glob(os.path.expanduser("~/.djl.ai/pytorch/*/*libdjl_torch.so")))
    if not found:
        sys.exit("no libdjl_torch.so under ~/.djl.ai/pytorch: run any Kiln training or test once so DJL unpacks it")
    return found[-1]


def add_probes(lib):
    """One probe per JNI function (perf lists each symbol twice: once from each symbol table); event -> name."""
    listed = subprocess.run(["perf", "probe", "-x", lib, "--funcs"], capture_output=True, text=True).stdout
    functions = sorted({f for f in listed.split() if f.startswith(PREFIX)})
    events = {}
    for i, function in enumerate(functions):
        event = f"{GROUP}:f{i}"
        added = subprocess.run(["perf", "probe", "-q", "-x", lib, "--add", f"{event}={function}"],
                               capture_output=True, text=True)
        if added.returncode == 0:
            events[event] = function[len(PREFIX):]
    if not events:
        sys.exit("perf could not add any probe: this needs root and a kernel with uprobes")
    return events


def remove_probes():
    subprocess.run(["perf", "probe", "-q", "-d", f"{GROUP}:*"], capture_output=True)


def counts(classpath, technique, shape, calls):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        subprocess.run(["perf", "stat", "-x,", "-e", f"{GROUP}:*", "-o", out.name, "java", "-Dai.djl.offline=true",
                        "-cp", classpath, HARNESS, "count", technique, shape, str(calls)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = {}
        for line in open(out.name):
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].startswith(GROUP + ":") and re.fullmatch(r"\d+", fields[0]):
                result[fields[2]] = int(fields[0])
        return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--classpath", required=True, help="plugins-mixup and its dependencies")
    parser.add_argument("--shape", default="1x28x28")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("techniques", nargs="*",
                        default=["copy", "mixup", "cutmix", "fmix", "resizemix", "mixup-cutmix", "decoupled"])
    args = parser.parse_args()
    remove_probes()
    events = add_probes(library())
    try:
        print(f"JNI calls per call, batch 128 x {args.shape} (difference of {args.calls} calls and 0 calls)\n")
        print("| technique | JNI calls | most called |")
        print("|---|---:|---|")
        for technique in args.techniques:
            before = counts(args.classpath, technique, args.shape, 0)
            after = counts(args.classpath, technique, args.shape, args.calls)
            per_call = {events[e]: (after.get(e, 0) - before.get(e, 0)) / args.calls for e in events}
            top = sorted((c, f) for f, c in per_call.items() if c >= 0.01)[::-1]
            name = "copy baseline" if technique == "copy" else technique
            listing = ", ".join(f"{f} {c:.2g}" for c, f in top[:8])
            print(f"| {name} | {sum(c for c, f in top):.1f} | {listing} |")
    finally:
        remove_probes()


if __name__ == "__main__":
    main()
