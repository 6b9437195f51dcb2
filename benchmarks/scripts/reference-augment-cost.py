#!/usr/bin/env python3
"""Times timm's Mixup, CutMix and their switch on this machine, against a plain copy of the batch, the way
`TechniqueRuns.java time` times Kiln's: a float32 batch of 128 random images and integer labels (10 classes), one
intra-op thread, interleaved rounds of 1000 calls, the fastest round of each. So the two tables read side by side:
the same batch, the same copy baseline (a copy of the inputs plus the one-hot targets as float32), the same statistic.

timm is the reference implementation of these three (docs/results/augment-cost.md, "against timm on the same
machine"). It is timed as its training loop calls it: its Mixup changes the batch in place, so it writes no new
batch, where Kiln's techniques return new inputs and leave the batch alone (the comparison favours timm by that
copy). Every row is timed twice: in PyTorch's default mode, which is how DJL runs every operation (DJL has a no-grad
switch but no inference mode), and under torch.inference_mode(), which skips the autograd and view-tracking work of
each operation: how much that one switch is worth at these sizes.

Needs torch and timm in the Python environment (timm's mixup module is loaded from its file, so timm's optional
torchvision dependency is not needed). Parameters match Kiln's defaults: mixup alpha 0.2; CutMix alpha 1.0 with the
corrected lambda; the switch with mixup 0.8, CutMix 1.0, switch probability 0.5; one coefficient per batch; no label
smoothing.

Usage: reference-augment-cost.py [CxHxW ...]   (default: 1x28x28 3x32x32)
"""
import importlib.metadata
import importlib.util
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("reference-augment-cost.py needs torch (and timm) in this Python environment; run it with a Python that"
             " has them")

BATCH = 128
CLASSES = 10
ROUNDS = 25
CALLS_PER_ROUND = 1000


def timm_mixup_module():
    """timm/data/mixup.py, loaded on its own: importing the timm package would pull in torchvision."""
    spec = importlib.util.find_spec("timm")
    if spec is None:
        sys.exit("timm is not installed in this Python environment")
    path = os.path.join(spec.submodule_search_locations[0], "data", "mixup.py")
    module_spec = importlib.util.spec_from_file_location("timm_data_mixup", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def bodies(x, y, mixup):
    """(name, call) pairs; every call returns what a training step would consume, so nothing is optimised away."""
    techniques = {
        "mixup": mixup.Mixup(mixup_alpha=0.2, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=CLASSES),
        "cutmix": mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=True, label_smoothing=0.0,
                              num_classes=CLASSES),
        "mixup-cutmix": mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0,
                                    label_smoothing=0.0, num_classes=CLASSES),
    }
    out = [("copy baseline", lambda: (x.clone(), F.one_hot(y, CLASSES).float()))]
    # Default arguments bind this iteration's fn. (Calling timm on a fresh clone of a 3x32x32 batch instead took
    # 2 ms a call, most of it in the kernel: 4.5 of that run's 7.5 minutes were system time, so it measured how the
    # process got fresh memory, not the technique.)
    out += [(f"timm {name}", lambda fn=fn: fn(x, y)) for name, fn in techniques.items()]
    return out


def fastest(calls, inference):
    best = [float("inf")] * len(calls)
    for _ in range(ROUNDS):
        for k, (_, call) in enumerate(calls):
            with torch.inference_mode(inference):
                start = time.perf_counter()
                for _ in range(CALLS_PER_ROUND):
                    call()
                best[k] = min(best[k], (time.perf_counter() - start) / CALLS_PER_ROUND * 1e6)
    return best


def main():
    torch.set_num_threads(1)
    torch.manual_seed(1)
    mixup = timm_mixup_module()
    timm_version = importlib.metadata.version("timm")
    print(f"torch {torch.__version__}, timm {timm_version}, {torch.get_num_threads()} intra-op thread")
    for shape in sys.argv[1:] or ["1x28x28", "3x32x32"]:
        try:
            c, h, w = (int(v) for v in shape.split("x"))
        except ValueError:
            sys.exit(f"sample shape '{shape}' is not CxHxW, for example 1x28x28")
        # The in-place rows keep mixing the same batch: its values stay in [0, 1], so the cost does not drift.
        x = torch.rand(BATCH, c, h, w)
        y = torch.randint(0, CLASSES, (BATCH,))
        calls = bodies(x, y, mixup)
        default = fastest(calls, False)
        inference = fastest(calls, True)
        print(f"\nbatch {BATCH} x {shape}, fastest of {ROUNDS} rounds of {CALLS_PER_ROUND} calls\n")
        print("| call | default mode, us | x copy | inference mode, us | x copy |")
        print("|---|---:|---:|---:|---:|")
        for k, (name, _) in enumerate(calls):
            print(f"| {name} | {default[k]:.1f} | {default[k] / default[0]:.2f} | {inference[k]:.1f} | "
                  f"{inference[k] / inference[0]:.2f} |")


if __name__ == "__main__":
    main()
