package dev.kiln.benchmarks.augment;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What the single operations the mixing techniques are built from cost at batch 128 (the default of the batch
 * parameter), beside the copy baseline of {@link AugmentCostBenchmark} measured in the same run. It answers how many
 * operations a technique can afford within a given multiple of the copy: at these sizes most operations cost a fixed
 * few microseconds whatever their size, so a technique's cost is mostly its count of native calls, plus its few passes
 * over the whole batch.
 *
 * <p>Each operation runs in its own sub-manager, like {@link AugmentCostBenchmark#augment}, so its cost includes
 * creating the result's handle and freeing it when the scope closes, as it does inside a technique.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Dai.djl.offline=true",
        "-Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error"})
public class AugmentOpCostBenchmark {

    /**
     * The batch of {@link AugmentCostBenchmark.Data} (set up first, by JMH's order for inherited helpers), and the
     * small arrays the operations take.
     */
    @State(Scope.Thread)
    public static class Data extends AugmentCostBenchmark.Data {
        /** A batch-sized array that the in-place paste writes into (its content does not matter). */
        NDArray target;
        /** One half of the batch over the box: the value a half-batch paste writes. */
        NDArray halfBox;
        /** (2, N/2 * K) one-hot targets, as the halves mixing product reads them. */
        NDArray targetHalves;
        /** A 2 x 2 mixing matrix. */
        NDArray mixing;
        /** A one-element array: an operation on it is all overhead and no data. */
        NDArray scalar;
        /** For the nearest-neighbour gather: (N * C, H * W) view of the batch and the broadcast pixel index. */
        NDArray planes;
        NDArray patchIndex;
        /** Rows of half the batch and a centred box of half the side: the region a half-batch paste reads. */
        NDIndex halfBoxRegion;
        /** The same box over the other half of the batch: the region a half-batch paste writes. */
        NDIndex otherHalfBoxRegion;

        @Setup(Level.Trial)
        public void setUpOperands() {
            int n = batch;
            Shape sample = AugmentCostBenchmark.sampleShape(shape);
            target = inputs.duplicate();
            int height = (int) sample.get(1);
            int width = (int) sample.get(2);
            int[] box = {height / 4, height / 4 + height / 2, width / 4, width / 4 + width / 2};
            halfBoxRegion = region(n / 2, n, box);
            otherHalfBoxRegion = region(0, n / 2, box);
            halfBox = inputs.get(halfBoxRegion).duplicate();
            targetHalves = labels.oneHot(AugmentCostBenchmark.CLASSES).reshape(2, -1);
            mixing = manager.create(new float[] {0.7f, 0.3f, 0.3f, 0.7f}, new Shape(2, 2));
            scalar = manager.create(new float[] {1f});
            long channels = sample.get(0);
            planes = inputs.reshape(n * channels, (long) height * width);
            // Every other row and column of the image: the index of a half-size nearest-neighbour patch.
            long[] pixels = new long[(height / 2) * (width / 2)];
            for (int i = 0; i < height / 2; i++) {
                for (int j = 0; j < width / 2; j++) {
                    pixels[i * (width / 2) + j] = 2L * i * width + 2L * j;
                }
            }
            patchIndex = manager.create(pixels, new Shape(1, pixels.length)).broadcast(n * channels, pixels.length);
        }

        private static NDIndex region(long rowStart, long rowEnd, int[] box) {
            return new NDIndex().addSliceDim(rowStart, rowEnd).addAllDim().addSliceDim(box[0], box[1])
                    .addSliceDim(box[2], box[3]);
        }

        /** Lends every array to an invocation's scope, so what the operation creates is freed with it. */
        void lend(NDManager scope) {
            for (NDArray a : new NDArray[] {inputs, labels, target, halfBox, targetHalves, mixing, scalar, planes,
                patchIndex}) {
                a.tempAttach(scope);
            }
        }

    }

    /** The baseline of {@link AugmentCostBenchmark}: a copy of the inputs and one-hot targets. */
    @Benchmark
    public Object copyBaseline(Data data) {
        return inScope(data, scope -> AugmentCostBenchmark.copyBatch(data.inputs, data.labels));
    }

    /** An empty scope: the floor under every other row. */
    @Benchmark
    public Object emptyScope(Data data) {
        return inScope(data, scope -> scope);
    }

    /** A copy of the batch: one full pass. */
    @Benchmark
    public Object duplicate(Data data) {
        return inScope(data, scope -> data.inputs.duplicate());
    }

    /** One-hot targets (N, K) from the labels. */
    @Benchmark
    public Object oneHot(Data data) {
        return inScope(data, scope -> data.labels.oneHot(AugmentCostBenchmark.CLASSES));
    }

    /** A one-element add: the fixed cost of one native operation that creates a result. */
    @Benchmark
    public Object scalarAdd(Data data) {
        return inScope(data, scope -> data.scalar.add(data.scalar));
    }

    /** A 2 x 2 array from host values, as a mixing matrix or a per-batch coefficient is made. */
    @Benchmark
    public Object createSmall(Data data) {
        return inScope(data, scope -> scope.create(new float[] {0.7f, 0.3f, 0.3f, 0.7f}, new Shape(2, 2)));
    }

    /** A reshape of the batch (a view, no data moves). */
    @Benchmark
    public Object reshape(Data data) {
        return inScope(data, scope -> data.inputs.reshape(2, -1));
    }

    /** The halves mixing product on the targets: (2, 2) x (2, N/2 * K). */
    @Benchmark
    public Object matMulTargets(Data data) {
        return inScope(data, scope -> data.mixing.matMul(data.targetHalves));
    }

    /** A view of half the batch over a box of half the side (no data moves). */
    @Benchmark
    public Object boxView(Data data) {
        return inScope(data, scope -> data.inputs.get(data.halfBoxRegion));
    }

    /** Writing half the batch's box in place: the strided copy of one half of a CutMix paste. */
    @Benchmark
    public Object boxSet(Data data) {
        return inScope(data, scope -> {
            data.target.set(data.otherHalfBoxRegion, data.halfBox);
            return data.target;
        });
    }

    /** The nearest-neighbour gather of a half-size patch of every sample (ResizeMix's resize). */
    @Benchmark
    public Object gatherPatch(Data data) {
        return inScope(data, scope -> data.planes.gather(data.patchIndex, 1));
    }

    /** One elementwise pass that writes a new batch-sized array (a blend or a mask application is two to four). */
    @Benchmark
    public Object fullKernel(Data data) {
        return inScope(data, scope -> data.inputs.mul(data.inputs));
    }

    /** Runs one operation in a fresh scope with the data lent to it; what it creates is freed when the scope closes. */
    private static Object inScope(Data data, Function<NDManager, Object> operation) {
        try (NDManager scope = data.manager.newSubManager()) {
            data.lend(scope);
            return operation.apply(scope);
        }
    }
}
