#!/usr/bin/env bash
# Merge benchmarks (issue 4): memory, speed and quality. Run from the repository root.
#   benchmarks/scripts/merge-bench.sh memory   # 3 synthetic ~1.6 GB checkpoints in /tmp, child JVMs with -Xmx512m
#   benchmarks/scripts/merge-bench.sh speed    # merge GB/s vs reading the same files, same JVM, warm page cache
#   benchmarks/scripts/merge-bench.sh quality  # Fashion-MNIST: base cnn + 5 fine-tunes, every merge method
#   benchmarks/scripts/merge-bench.sh multitask  # one encoder, four Fashion-MNIST tasks with own heads (FusionBench)
#   benchmarks/scripts/merge-bench.sh all      # memory, then speed on the same files (then deleted), then quality
# Needs about 6.5 GB free under /tmp for memory/speed. Extra arguments go to the runner.
# Writes docs/results/merge-memory.md, merge-speed.md, merge-quality.md, merge-multitask.md.
set -euo pipefail

WHAT="${1:-all}"
shift || true
BUILD="${KILN_BUILD_DIRNAME:-target-mb}"
CPFILE="$(mktemp)"
./mvnw -B -q -o -pl benchmarks -am -Dkiln.build.dirname="$BUILD" compile dependency:build-classpath \
  -Dmdep.outputFile="$CPFILE"
CP="benchmarks/$BUILD/classes:$(cat "$CPFILE")"
rm -f "$CPFILE"
JAVA=(java -Dai.djl.offline=true -Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error -cp "$CP")
# The speed runner merges in its own JVM: give it the malloc settings kiln:merge's worker JVM gets
# (WorkerLauncher.MALLOC_TUNABLES; the memory runner sets them for its child JVMs itself).
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296}"

case "$WHAT" in
  memory)
    "${JAVA[@]}" dev.kiln.benchmarks.merge.MergeMemory --command "benchmarks/scripts/merge-bench.sh memory $*" "$@" ;;
  speed)
    java -Xmx2g -XX:MaxDirectMemorySize=4g "${JAVA[@]:1}" dev.kiln.benchmarks.merge.MergeSpeed \
      --command "benchmarks/scripts/merge-bench.sh speed $*" "$@" ;;
  quality)
    "${JAVA[@]}" dev.kiln.benchmarks.merge.MergeQuality --command "benchmarks/scripts/merge-bench.sh quality $*" "$@" ;;
  multitask)
    "${JAVA[@]}" dev.kiln.benchmarks.merge.MultiTaskMerge --command "benchmarks/scripts/merge-bench.sh multitask $*" "$@" ;;
  all)
    "${JAVA[@]}" dev.kiln.benchmarks.merge.MergeMemory --keep true --command "benchmarks/scripts/merge-bench.sh all"
    java -Xmx2g -XX:MaxDirectMemorySize=4g "${JAVA[@]:1}" dev.kiln.benchmarks.merge.MergeSpeed --command "benchmarks/scripts/merge-bench.sh all"
    "${JAVA[@]}" dev.kiln.benchmarks.merge.MergeQuality --command "benchmarks/scripts/merge-bench.sh all" ;;
  *)
    echo "usage: $0 memory|speed|quality|multitask|all [runner options]" >&2; exit 2 ;;
esac
