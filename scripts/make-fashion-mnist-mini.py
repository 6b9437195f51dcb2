#!/usr/bin/env python3
"""Writes the embedded Fashion-MNIST subset: the first N images of each class, in the original order.

Usage: make-fashion-mnist-mini.py SRC_DIR DEST_DIR [TRAIN_PER_CLASS] [TEST_PER_CLASS]

SRC_DIR holds the four full gzip'd IDX files (see scripts/fetch-fashion-mnist.sh). The output is byte-for-byte
reproducible: gzip with mtime 0 and no file name, so the SHA-256 values in data/fashion-mnist-mini/README.md hold.
"""
import gzip
import hashlib
import os
import struct
import sys


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        sys.exit(f"{path}: magic {got:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def write_idx(path, magic, dims, payload):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims)
    with open(path, "wb") as raw:
        # mtime=0 and an empty name keep the gzip bytes identical across runs and machines.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(header + payload)


def subset(src, dest, prefix, per_class):
    (n, rows, cols), pixels = read_idx(os.path.join(src, prefix + "-images-idx3-ubyte.gz"), 0x803)
    (m,), labels = read_idx(os.path.join(src, prefix + "-labels-idx1-ubyte.gz"), 0x801)
    if n != m:
        sys.exit(f"{prefix}: {n} images but {m} labels")
    size = rows * cols
    taken = [0] * 10
    keep = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            keep.append(i)
    if any(t != per_class for t in taken):
        sys.exit(f"{prefix}: not enough images per class: {taken}")
    out_pixels = b"".join(pixels[i * size:(i + 1) * size] for i in keep)
    out_labels = bytes(labels[i] for i in keep)
    write_idx(os.path.join(dest, prefix + "-images-idx3-ubyte.gz"), 0x803, (len(keep), rows, cols), out_pixels)
    write_idx(os.path.join(dest, prefix + "-labels-idx1-ubyte.gz"), 0x801, (len(keep),), out_labels)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dest = sys.argv[1], sys.argv[2]
    train = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    test = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    os.makedirs(dest, exist_ok=True)
    subset(src, dest, "train", train)
    subset(src, dest, "t10k", test)
    for name in sorted(os.listdir(dest)):
        if name.endswith(".gz"):
            with open(os.path.join(dest, name), "rb") as f:
                print(hashlib.sha256(f.read()).hexdigest(), name)


if __name__ == "__main__":
    main()
