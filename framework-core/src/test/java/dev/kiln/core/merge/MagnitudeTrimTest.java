package dev.kiln.core.merge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.merge.MergePipelineTest.T;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MagnitudeRanks;
import dev.kiln.spi.merge.MagnitudeTrim;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Magnitude trimming in row blocks: the threshold search equals a sort of the magnitudes, a method merged in blocks
 * equals the same method merged whole bit for bit (magnitude ties straddling blocks included), and whole-model
 * trimming equals a float64 reference that ranks the concatenated model.
 */
class MagnitudeTrimTest {

    @TempDir
    Path dir;

    /** Indices of {@code v} largest first, equal values by index (the tie rule every selection must follow). */
    static Integer[] order(float[] v) {
        Integer[] idx = new Integer[v.length];
        for (int j = 0; j < v.length; j++) {
            idx[j] = j;
        }
        Arrays.sort(idx, Comparator.<Integer>comparingDouble(j -> -v[j]).thenComparingInt(j -> j));
        return idx;
    }

    /** The k largest of {@code v} by {@link #order}. */
    static boolean[] largest(float[] v, long k) {
        boolean[] keep = new boolean[v.length];
        Integer[] idx = order(v);
        for (int r = 0; r < k; r++) {
            keep[idx[r]] = true;
        }
        return keep;
    }

    /**
     * Keeps of each task vector the entries among the {@code density} largest magnitudes but not among the
     * {@code gamma} largest (two selections per model, like breadcrumbs), and adds their weighted sum to the base.
     * Merged whole it ranks with a Java sort of the tensor; in blocks it asks the core's ranks.
     */
    static final class Trim implements MergeMethod, MagnitudeTrim {
        final double density;
        final double gamma;
        final TrimScope scope;

        Trim(double density, double gamma, TrimScope scope) {
            this.density = density;
            this.gamma = gamma;
            this.scope = scope;
        }

        @Override
        public boolean requiresBase() {
            return true;
        }

        @Override
        public TrimScope trimScope() {
            return scope;
        }

        @Override
        public long[] keepCounts(int model, Map<String, Double> overrides, long numel, String where) {
            double d = overrides.getOrDefault("density", density);
            if (d <= 0 || d > 1) {
                throw new KilnException(where + ": model " + model + " density " + d + " is outside (0, 1]");
            }
            return new long[] {Math.round(d * numel), Math.round(gamma * numel)};
        }

        @Override
        public NDArray merge(MergeInput input) {
            NDArray base = input.base();
            NDArray sum = base.zerosLike();
            MagnitudeRanks ranks = input.ranks();
            for (int i = 0; i < input.models().size(); i++) {
                ModelTensor m = input.models().get(i);
                NDArray tau = m.tensor().sub(base);
                NDArray magnitude = tau.abs();
                long numel = ranks != null ? ranks.scopeElements() : tau.size();
                long[] k = keepCounts(i, m.overrides(), numel, input.tensorName());
                NDArray keep;
                if (ranks != null) {
                    keep = ranks.largest(i, k[0], magnitude).logicalAnd(ranks.largest(i, k[1], magnitude)
                            .logicalNot());
                } else {
                    if (scope == TrimScope.MODEL) {
                        throw new IllegalStateException("model scope needs ranks");
                    }
                    float[] v = magnitude.toFloatArray();
                    boolean[] in = largest(v, k[0]);
                    boolean[] out = largest(v, k[1]);
                    boolean[] both = new boolean[v.length];
                    for (int j = 0; j < v.length; j++) {
                        both[j] = in[j] && !out[j];
                    }
                    keep = base.getManager().create(both, tau.getShape());
                }
                sum = sum.add(tau.mul(keep.toType(DataType.FLOAT32, false)).mul((float) m.weight()));
            }
            return base.add(sum);
        }
    }

    /** In-memory magnitudes split into blocks, for the search alone. */
    static final class ArraySource implements MagnitudeCuts.Source {
        final float[][] values;

        ArraySource(float[][] values) {
            this.values = values;
        }

        @Override
        public List<NDArray> magnitudes(MagnitudeCuts.Block block, NDManager manager) {
            return runs(List.of(new MagnitudeCuts.Run(block, block.first(), (int) block.elements())), manager);
        }

        @Override
        public List<NDArray> runs(List<MagnitudeCuts.Run> runs, NDManager manager) {
            // The scope is one "tensor" here, so a run's first element is its place in the scope.
            List<NDArray> out = new ArrayList<>();
            for (float[] v : values) {
                int total = 0;
                for (MagnitudeCuts.Run r : runs) {
                    total += r.count();
                }
                float[] joined = new float[total];
                int at = 0;
                for (MagnitudeCuts.Run r : runs) {
                    System.arraycopy(v, (int) r.first(), joined, at, r.count());
                    at += r.count();
                }
                out.add(manager.create(joined, new Shape(total)));
            }
            return out;
        }
    }

    @Test
    void thresholdSearchMatchesASortIncludingTiesZerosAndForcedExtraPasses() {
        Random r = new Random(3);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            for (int trial = 0; trial < 24; trial++) {
                int n = 1 + r.nextInt(3000);
                int levels = trial % 3 == 0 ? 3 : trial % 3 == 1 ? 40 : 0;
                float[][] values = new float[2][n];
                for (float[] v : values) {
                    for (int j = 0; j < n; j++) {
                        // Few levels: massive ties; 0 levels: continuous; a third of zeros either way.
                        v[j] = r.nextInt(3) == 0 ? 0f : levels > 0 ? (1 + r.nextInt(levels)) / 8f
                                : (float) Math.abs(r.nextGaussian());
                    }
                }
                List<MagnitudeCuts.Block> blocks = new ArrayList<>();
                for (int at = 0; at < n; ) {
                    int size = Math.min(n - at, 1 + r.nextInt(400));
                    blocks.add(new MagnitudeCuts.Block("w", 0, 1, at, size));
                    at += size;
                }
                long[][] counts = new long[2][];
                for (int m = 0; m < 2; m++) {
                    counts[m] = new long[] {0, 1, n, n - 1, r.nextInt(n + 1), Math.round(0.2 * n)};
                }
                // Tiny samples and budgets force brackets that miss and candidate sets that do not fit.
                int sample = trial % 2 == 0 ? 16 : 4096;
                long budget = trial % 4 < 2 ? 3 : 1 << 20;
                MagnitudeCuts.Found[][] found = MagnitudeCuts.find(blocks, counts, new ArraySource(values),
                        trial % 2 == 0 ? pool : null, "trial " + trial, sample, budget);
                for (int m = 0; m < 2; m++) {
                    for (int j = 0; j < counts[m].length; j++) {
                        long k = counts[m][j];
                        boolean[] want = largest(values[m], k);
                        MagnitudeCuts.Found f = found[m][j];
                        String what = "trial " + trial + " model " + m + " k " + k + " of " + n;
                        assertEquals(k, f.cut().k(), what);
                        try (NDManager manager = NDManager.newBaseManager()) {
                            for (int b = 0; b < blocks.size(); b++) {
                                MagnitudeCuts.Block block = blocks.get(b);
                                int from = (int) block.first();
                                int to = from + (int) block.elements();
                                NDArray x = manager.create(Arrays.copyOfRange(values[m], from, to));
                                long[] before = f.equalBefore();
                                boolean[] got = f.cut().select(x, before[b]).toBooleanArray();
                                assertArrayEquals(Arrays.copyOfRange(want, from, to), got, what + " block " + b);
                                // With the block's own count of equal elements the shortcuts must agree.
                                boolean[] fast = f.cut().select(x, before[b], before[b + 1] - before[b])
                                        .toBooleanArray();
                                assertArrayEquals(got, fast, what + " block " + b + " (known equal count)");
                            }
                        }
                        if (k > 0 && k < n) {
                            float[] sorted = values[m].clone();
                            Arrays.sort(sorted);
                            assertEquals(sorted[(int) (n - k)], f.cut().threshold(), what);
                        }
                    }
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    private static final long[][] SHAPES = {{40, 9}, {120}, {3, 3}, {11, 2, 5}};

    /** Base and fine-tunes whose task vectors sit on a coarse grid (many equal magnitudes), some exactly zero. */
    private List<float[][]> checkpoints(Random r, int count) {
        float[][] base = new float[SHAPES.length][];
        List<float[][]> all = new ArrayList<>();
        for (int m = 0; m <= count; m++) {
            float[][] v = new float[SHAPES.length][];
            T[] tensors = new T[SHAPES.length + 1];
            for (int t = 0; t < SHAPES.length; t++) {
                int n = 1;
                for (long d : SHAPES[t]) {
                    n *= (int) d;
                }
                v[t] = new float[n];
                for (int j = 0; j < n; j++) {
                    v[t][j] = m == 0 ? (r.nextInt(513) - 256) / 64f
                            : base[t][j] + (r.nextInt(4) == 0 ? 0f : (r.nextInt(9) - 4) / 16f);
                }
                tensors[t] = T.f("t" + t, DType.F32, v[t], SHAPES[t]);
            }
            if (m == 0) {
                base = v;
            }
            tensors[SHAPES.length] = T.i64("pos", new long[] {m, 1, 2});
            MergePipelineTest.write(dir.resolve("m" + m + ".safetensors"), tensors);
            all.add(v);
        }
        return all;
    }

    private MergeSpec spec(int models, Path out, int threads, Map<String, Double> override) {
        List<MergeSpec.ModelInput> inputs = new ArrayList<>();
        for (int m = 1; m <= models; m++) {
            inputs.add(new MergeSpec.ModelInput(dir.resolve("m" + m + ".safetensors"), 0.5 + m,
                    m == 2 ? override : Map.of()));
        }
        return new MergeSpec("trim", Map.of(), dir.resolve("m0.safetensors"), inputs, out, threads, 7L, null, 0,
                false);
    }

    private static byte[] bytes(Path file, String name) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            return r.readBytes(name);
        }
    }

    @Test
    void blockedTrimEqualsTheWholeTensorMergeBitForBit() {
        checkpoints(new Random(5), 3);
        Map<String, Double> override = Map.of("density", 0.6);
        Path whole = dir.resolve("whole/out.safetensors");
        Map<String, Object> wholeReport = new MergePipeline(new Trim(0.3, 0.05, MagnitudeTrim.TrimScope.TENSOR),
                spec(3, whole, 1, override), null).run();
        for (int threads : new int[] {1, 2}) {
            Path blocks = dir.resolve("blocks" + threads + "/out.safetensors");
            MergePipeline pipeline = new MergePipeline(new Trim(0.3, 0.05, MagnitudeTrim.TrimScope.TENSOR),
                    spec(3, blocks, threads, override), null);
            pipeline.blockElements(20);
            Map<String, Object> report = pipeline.run();
            Map<?, ?> tensors = (Map<?, ?>) report.get("tensors");
            assertEquals(20, ((Map<?, ?>) tensors.get("t0")).get("blocks"), "two rows of 9 per block");
            assertEquals(6, ((Map<?, ?>) tensors.get("t1")).get("blocks"));
            assertFalse(((Map<?, ?>) tensors.get("t2")).containsKey("blocks"));
            for (String name : List.of("t0", "t1", "t2", "t3", "pos")) {
                assertArrayEquals(bytes(whole, name), bytes(blocks, name), threads + " threads: " + name);
                if (!name.equals("pos")) {
                    Map<?, ?> w = (Map<?, ?>) ((Map<?, ?>) wholeReport.get("tensors")).get(name);
                    assertEquals(w.get("keptDensity"), ((Map<?, ?>) tensors.get(name)).get("keptDensity"), name);
                }
            }
        }
    }

    @Test
    void modelScopeTrimMatchesAFloat64ReferenceOverTheConcatenatedModel() {
        List<float[][]> values = checkpoints(new Random(6), 2);
        float[][] base = values.get(0);
        // The model scope in checkpoint order: t0, t1, t2, t3 (the integer tensor is not ranked).
        int total = 0;
        int[] start = new int[SHAPES.length];
        for (int t = 0; t < SHAPES.length; t++) {
            start[t] = total;
            total += base[t].length;
        }
        double density = 0.25;
        double gamma = 0.02;
        double[] expected = new double[total];
        for (int t = 0; t < SHAPES.length; t++) {
            for (int j = 0; j < base[t].length; j++) {
                expected[start[t] + j] = base[t][j];
            }
        }
        for (int m = 1; m <= 2; m++) {
            float[] magnitude = new float[total];
            double[] tau = new double[total];
            for (int t = 0; t < SHAPES.length; t++) {
                for (int j = 0; j < base[t].length; j++) {
                    tau[start[t] + j] = (double) values.get(m)[t][j] - base[t][j];
                    magnitude[start[t] + j] = (float) Math.abs(tau[start[t] + j]);
                }
            }
            boolean[] in = largest(magnitude, Math.round(density * total));
            boolean[] out = largest(magnitude, Math.round(gamma * total));
            for (int j = 0; j < total; j++) {
                expected[j] += in[j] && !out[j] ? (0.5 + m) * tau[j] : 0;
            }
        }
        for (long block : new long[] {7, 1000}) {
            Path file = dir.resolve("model" + block + "/out.safetensors");
            MergePipeline pipeline = new MergePipeline(new Trim(density, gamma, MagnitudeTrim.TrimScope.MODEL),
                    spec(2, file, 2, Map.of()), null);
            pipeline.blockElements(block);
            pipeline.run();
            boolean differsFromPerTensor = false;
            try (SafetensorsReader reader = SafetensorsReader.open(file)) {
                for (int t = 0; t < SHAPES.length; t++) {
                    float[] got = reader.readFloats("t" + t);
                    for (int j = 0; j < got.length; j++) {
                        double want = expected[start[t] + j];
                        assertEquals(want, got[j], 1e-6 * (1 + Math.abs(want)), "t" + t + "[" + j + "]");
                    }
                }
            }
            Path perTensor = dir.resolve("tensor" + block + "/out.safetensors");
            new MergePipeline(new Trim(density, gamma, MagnitudeTrim.TrimScope.TENSOR), spec(2, perTensor, 1,
                    Map.of()), null).run();
            for (int t = 0; t < SHAPES.length; t++) {
                differsFromPerTensor |= !Arrays.equals(bytes(file, "t" + t), bytes(perTensor, "t" + t));
            }
            assertTrue(differsFromPerTensor, "the data must tell whole-model and per-tensor trimming apart");
            assertArrayEquals(bytes(dir.resolve("m0.safetensors"), "pos"), bytes(file, "pos"));
        }
    }

    @Test
    void aBadPerModelDensityInModelScopeFailsBeforeAnyTensorIsMergedAndLeavesNoOutput() throws Exception {
        checkpoints(new Random(7), 2);
        Path out = dir.resolve("bad/out.safetensors");
        MergePipeline pipeline = new MergePipeline(new Trim(0.3, 0, MagnitudeTrim.TrimScope.MODEL),
                spec(2, out, 2, Map.of("density", 2.0)), null);
        KilnException e = assertThrows(KilnException.class, pipeline::run);
        assertTrue(e.getMessage().contains("whole model") && e.getMessage().contains("model 1"), e.getMessage());
        assertFalse(Files.exists(out));
        try (var files = Files.list(out.getParent())) {
            assertEquals(List.of(), files.toList(), "no temporary file left");
        }
    }

    @Test
    void aNanIsStillFoundWhenNothingIsTrimmedAndNoSearchReadsTheInputs() {
        checkpoints(new Random(9), 2);
        float[] bad = new float[360];
        bad[300] = Float.NaN;
        MergePipelineTest.write(dir.resolve("m2.safetensors"), T.f("t0", DType.F32, bad, 40, 9),
                T.f("t1", DType.F32, new float[120], 120), T.f("t2", DType.F32, new float[9], 3, 3),
                T.f("t3", DType.F32, new float[110], 11, 2, 5), T.i64("pos", new long[] {1, 1, 2}));
        for (MagnitudeTrim.TrimScope scope : MagnitudeTrim.TrimScope.values()) {
            Path out = dir.resolve("keepall-" + scope + "/out.safetensors");
            // density 1 and gamma 0 keep everything: no threshold to search, so the merge pass must check.
            MergePipeline pipeline = new MergePipeline(new Trim(1.0, 0, scope), spec(2, out, 1, Map.of()), null);
            pipeline.blockElements(20);
            KilnException e = assertThrows(KilnException.class, pipeline::run);
            assertTrue(e.getMessage().contains("'t0'") && e.getMessage().contains("model 2")
                    && e.getMessage().contains("NaN"), scope + ": " + e.getMessage());
            assertFalse(Files.exists(out));
        }
    }

    @Test
    void nonFiniteTaskVectorsAreRefusedByTheSearchEvenWithAllowNonFinite() {
        checkpoints(new Random(8), 2);
        float[] bad = new float[360];
        bad[200] = Float.NaN;
        MergePipelineTest.write(dir.resolve("m2.safetensors"), T.f("t0", DType.F32, bad, 40, 9),
                T.f("t1", DType.F32, new float[120], 120), T.f("t2", DType.F32, new float[9], 3, 3),
                T.f("t3", DType.F32, new float[110], 11, 2, 5), T.i64("pos", new long[] {1, 1, 2}));
        Path out = dir.resolve("nan/out.safetensors");
        List<MergeSpec.ModelInput> inputs = List.of(new MergeSpec.ModelInput(dir.resolve("m1.safetensors"), 1,
                Map.of()), new MergeSpec.ModelInput(dir.resolve("m2.safetensors"), 1, Map.of()));
        MergePipeline pipeline = new MergePipeline(new Trim(0.3, 0, MagnitudeTrim.TrimScope.TENSOR), new MergeSpec(
                "trim", Map.of(), dir.resolve("m0.safetensors"), inputs, out, 1, 7L, null, 0, true), null);
        pipeline.blockElements(20);
        KilnException e = assertThrows(KilnException.class, pipeline::run);
        assertTrue(e.getMessage().contains("'t0'") && e.getMessage().contains("model 2")
                && e.getMessage().contains("finite"), e.getMessage());
        assertFalse(Files.exists(out));
    }
}
