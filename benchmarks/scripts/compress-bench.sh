#!/usr/bin/env bash
# Compression benchmarks (issue 6). Run from the repository root.
#   benchmarks/scripts/compress-bench.sh classifiers  # cnn + resnet on data/fashion-mnist-mini, every compressor
#   benchmarks/scripts/compress-bench.sh lm           # decoder LM weights: size, error, decode tokens/s, perplexity
#   benchmarks/scripts/compress-bench.sh soups        # SparseSoup vs best single pruned fine-tune, 50% and 80%
#   benchmarks/scripts/compress-bench.sh all
# Extra arguments (--name value) go to the runner. Writes docs/results/compress-classifiers.md, compress-lm.md,
# sparse-soups.md. Uses the installed kiln-* snapshots (~/.m2) and compiles only the benchmarks module.
set -euo pipefail

WHAT="${1:-all}"
shift || true
BUILD="${KILN_BUILD_DIRNAME:-target-cb}"
CPFILE="$(mktemp)"
mvn -B -q -o -pl benchmarks -Dkiln.build.dirname="$BUILD" compile dependency:build-classpath \
  -Dmdep.outputFile="$CPFILE"
CP="benchmarks/$BUILD/classes:$(cat "$CPFILE")"
rm -f "$CPFILE"
JAVA=(java -Dai.djl.offline=true -Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error -cp "$CP")
PKG=dev.kiln.benchmarks.compress

case "$WHAT" in
  classifiers) "${JAVA[@]}" $PKG.CompressClassifiers --command "benchmarks/scripts/compress-bench.sh classifiers $*" "$@" ;;
  lm) "${JAVA[@]}" $PKG.CompressLm --command "benchmarks/scripts/compress-bench.sh lm $*" "$@" ;;
  soups) "${JAVA[@]}" $PKG.SparseSoups --command "benchmarks/scripts/compress-bench.sh soups $*" "$@" ;;
  all)
    "${JAVA[@]}" $PKG.CompressClassifiers --command "benchmarks/scripts/compress-bench.sh all"
    "${JAVA[@]}" $PKG.CompressLm --command "benchmarks/scripts/compress-bench.sh all"
    "${JAVA[@]}" $PKG.SparseSoups --command "benchmarks/scripts/compress-bench.sh all" ;;
  *)
    echo "usage: $0 classifiers|lm|soups|all [--name value ...]" >&2; exit 2 ;;
esac
