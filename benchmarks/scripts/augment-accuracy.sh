#!/usr/bin/env bash
# Trains the zoo cnn (or another zoo model) on the full Fashion-MNIST once per mixed-sample augmentation and writes
# docs/results/augment-accuracy.md. Run from the repository root after `./mvnw -B install -DskipTests` (or with the
# kiln jars already in ~/.m2). Long: about 10 epochs x 7 configurations of one cnn run each.
#   benchmarks/scripts/augment-accuracy.sh [--model cnn] [--epochs 10] [--configs none,mixup,...]
set -euo pipefail

DATA="data/full/fashion-mnist"
BUILD="${KILN_BUILD_DIRNAME:-target}"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || scripts/fetch-fashion-mnist.sh "$DATA"

./mvnw -B -q -pl benchmarks -Dkiln.build.dirname="$BUILD" compile dependency:build-classpath \
  -Dmdep.outputFile="$BUILD-classpath.txt"
CP="benchmarks/$BUILD/classes:$(cat "benchmarks/$BUILD-classpath.txt")"
rm -f "benchmarks/$BUILD-classpath.txt"

exec java -Dai.djl.offline=true -Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error -cp "$CP" \
  dev.kiln.benchmarks.augment.FashionMnistAccuracy --data "$DATA" --out docs/results/augment-accuracy.md \
  --command "benchmarks/scripts/augment-accuracy.sh $*" "$@"
