package dev.kiln.core.merge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import dev.kiln.core.merge.MergePipelineTest.T;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.ShardedCheckpoint;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Row-block merging of elementwise methods: the result is the whole-tensor result bit for bit, the inputs really
 * arrive in blocks, the report's statistics are unchanged, and nothing is left beside the output.
 */
class BlockMergeTest {

    @TempDir
    Path dir;

    /** Weighted average that declares itself elementwise and records the largest row count it was given. */
    static final class Linear implements MergeMethod {
        long maxRows;

        @Override
        public boolean elementwise() {
            return true;
        }

        @Override
        public synchronized NDArray merge(MergeInput input) {
            NDArray sum = null;
            double total = 0;
            for (ModelTensor m : input.models()) {
                maxRows = Math.max(maxRows, m.tensor().getShape().getShape().length == 0 ? 1
                        : m.tensor().getShape().get(0));
                NDArray term = m.tensor().mul((float) m.weight());
                sum = sum == null ? term : sum.add(term);
                total += m.weight();
            }
            return sum.div((float) total);
        }
    }

    /** Task arithmetic: base + 0.7 * sum_i w_i (theta_i - base), elementwise. */
    static final class TaskArithmetic implements MergeMethod {
        @Override
        public boolean elementwise() {
            return true;
        }

        @Override
        public NDArray merge(MergeInput input) {
            NDArray sum = null;
            for (ModelTensor m : input.models()) {
                NDArray term = m.tensor().sub(input.base()).mul((float) m.weight());
                sum = sum == null ? term : sum.add(term);
            }
            return input.base().add(sum.mul(0.7f));
        }

        @Override
        public boolean requiresBase() {
            return true;
        }
    }

    private static final long[][] SHAPES = {{13, 7}, {50}, {2, 2}, {9, 2, 3}};

    /** Writes {@code count} random checkpoints with the tensors of {@link #SHAPES} plus an integer tensor. */
    private List<float[][]> checkpoints(Random r, String prefix, int count) {
        List<float[][]> values = new ArrayList<>();
        for (int m = 0; m < count; m++) {
            float[][] v = new float[SHAPES.length][];
            T[] tensors = new T[SHAPES.length + 1];
            for (int t = 0; t < SHAPES.length; t++) {
                int n = 1;
                for (long d : SHAPES[t]) {
                    n *= (int) d;
                }
                v[t] = MergePipelineTest.random(r, n);
                // Zero some entries so unchanged elements and sign conflicts both occur in the statistics.
                for (int i = 0; i < n; i += 5) {
                    v[t][i] = 0f;
                }
                tensors[t] = T.f("t" + t, DType.F32, v[t], SHAPES[t]);
            }
            tensors[SHAPES.length] = T.i64("pos", new long[] {m, 1, 2});
            MergePipelineTest.write(dir.resolve(prefix + m + ".safetensors"), tensors);
            values.add(v);
        }
        return values;
    }

    private MergeSpec spec(Path base, int models, String prefix, Path out, DType dtype, long maxShard) {
        List<MergeSpec.ModelInput> inputs = new ArrayList<>();
        for (int m = 0; m < models; m++) {
            inputs.add(new MergeSpec.ModelInput(dir.resolve(prefix + m + ".safetensors"), 0.5 + m, Map.of()));
        }
        return new MergeSpec("test", Map.of(), base, inputs, out, 2, 7L, dtype, maxShard, false);
    }

    private static byte[] bytes(Path file, String name) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            return r.readBytes(name);
        }
    }

    @Test
    void blockMergedLinearEqualsWholeTensorMergeBitForBitInEveryOutputDtype() throws Exception {
        checkpoints(new Random(11), "m", 3);
        for (DType dtype : new DType[] {null, DType.F16, DType.BF16, DType.F64}) {
            String tag = dtype == null ? "f32" : dtype.code();
            Path whole = dir.resolve("whole-" + tag + "/out.safetensors");
            Path blocks = dir.resolve("blocks-" + tag + "/out.safetensors");
            Linear wholeMethod = new Linear();
            Map<String, Object> wholeReport = new MergePipeline(wholeMethod, spec(null, 3, "m", whole, dtype, 0), null)
                    .run();
            Linear blockMethod = new Linear();
            MergePipeline pipeline = new MergePipeline(blockMethod, spec(null, 3, "m", blocks, dtype, 0), null);
            pipeline.blockElements(10);
            Map<String, Object> blockReport = pipeline.run();
            assertEquals(50, wholeMethod.maxRows);
            // 10 elements per block: one row of 7 for t0, ten rows of 1 for t1, one row of 6 for t3.
            assertEquals(10, blockMethod.maxRows);
            Map<?, ?> tensors = (Map<?, ?>) blockReport.get("tensors");
            assertEquals(13, ((Map<?, ?>) tensors.get("t0")).get("blocks"));
            assertEquals(5, ((Map<?, ?>) tensors.get("t1")).get("blocks"));
            assertNull(((Map<?, ?>) tensors.get("t2")).get("blocks"), "a tensor under the block size is merged whole");
            assertEquals(9, ((Map<?, ?>) tensors.get("t3")).get("blocks"));
            assertNull(((Map<?, ?>) ((Map<?, ?>) wholeReport.get("tensors")).get("t0")).get("blocks"));
            for (String name : List.of("t0", "t1", "t2", "t3", "pos")) {
                assertArrayEquals(bytes(whole, name), bytes(blocks, name), tag + " " + name);
            }
            try (Stream<Path> files = Files.list(blocks.getParent())) {
                assertEquals(List.of("out.merge-report.json", "out.safetensors"),
                        files.map(p -> p.getFileName().toString()).sorted().toList(), "no scratch file left");
            }
        }
    }

    @Test
    void blockMergedTaskArithmeticMatchesWholeMergeAndAFloat64Reference() {
        Random r = new Random(12);
        float[][] base = checkpoints(r, "base", 1).get(0);
        List<float[][]> models = checkpoints(r, "ft", 2);
        Path baseFile = dir.resolve("base0.safetensors");
        Path whole = dir.resolve("whole/out.safetensors");
        Path blocks = dir.resolve("blocks/out.safetensors");
        Map<String, Object> wholeReport = new MergePipeline(new TaskArithmetic(), spec(baseFile, 2, "ft", whole,
                null, 0), null).run();
        MergePipeline pipeline = new MergePipeline(new TaskArithmetic(), spec(baseFile, 2, "ft", blocks, null, 0),
                null);
        pipeline.blockElements(8);
        Map<String, Object> blockReport = pipeline.run();
        for (int t = 0; t < SHAPES.length; t++) {
            String name = "t" + t;
            assertArrayEquals(bytes(whole, name), bytes(blocks, name), name);
            Map<?, ?> w = (Map<?, ?>) ((Map<?, ?>) wholeReport.get("tensors")).get(name);
            Map<?, ?> b = (Map<?, ?>) ((Map<?, ?>) blockReport.get("tensors")).get(name);
            assertEquals(w.get("keptDensity"), b.get("keptDensity"), name);
            assertEquals(w.get("signConflict"), b.get("signConflict"), name);
            try (SafetensorsReader reader = SafetensorsReader.open(blocks)) {
                float[] got = reader.readFloats(name);
                long changed = 0;
                long conflicts = 0;
                for (int i = 0; i < got.length; i++) {
                    double sum = 0;
                    boolean pos = false;
                    boolean neg = false;
                    for (int m = 0; m < 2; m++) {
                        double tau = (double) models.get(m)[t][i] - base[t][i];
                        sum += (0.5 + m) * tau;
                        pos |= (float) tau > 0;
                        neg |= (float) tau < 0;
                    }
                    double expected = base[t][i] + 0.7 * sum;
                    assertEquals(expected, got[i], 1e-5 * (1 + Math.abs(expected)), name + "[" + i + "]");
                    changed += got[i] != base[t][i] ? 1 : 0;
                    conflicts += pos && neg ? 1 : 0;
                }
                assertEquals(conflicts / (double) got.length, (double) b.get("signConflict"), 1e-12, name);
                assertEquals(changed / (double) got.length, (double) b.get("keptDensity"), 1e-12, name);
            }
        }
        assertTrue((double) ((Map<?, ?>) ((Map<?, ?>) blockReport.get("tensors")).get("t0")).get("signConflict")
                > 0, "the data must contain sign conflicts for the statistic to be checked");
    }

    @Test
    void blockMergingWritesShardedOutputsToo() {
        checkpoints(new Random(13), "m", 2);
        Path whole = dir.resolve("whole/out.safetensors");
        Path blocks = dir.resolve("blocks/out.safetensors");
        new MergePipeline(new Linear(), spec(null, 2, "m", whole, null, 300), null).run();
        MergePipeline pipeline = new MergePipeline(new Linear(), spec(null, 2, "m", blocks, null, 300), null);
        pipeline.blockElements(10);
        pipeline.run();
        try (ShardedCheckpoint a = ShardedCheckpoint.open(MergePipeline.producedFile(whole, 300));
                ShardedCheckpoint b = ShardedCheckpoint.open(MergePipeline.producedFile(blocks, 300))) {
            assertTrue(a.shards().size() > 1, "the test needs several shards");
            for (String name : a.names()) {
                assertArrayEquals(a.reader(name).readBytes(name), b.reader(name).readBytes(name), name);
            }
        }
    }

    @Test
    void aNonFiniteValueInALaterBlockFailsNamingTheTensorAndModel() {
        checkpoints(new Random(14), "m", 2);
        float[] bad = MergePipelineTest.random(new Random(15), 91);
        bad[90] = Float.NaN;
        MergePipelineTest.write(dir.resolve("m1.safetensors"), T.f("t0", DType.F32, bad, 13, 7),
                T.f("t1", DType.F32, new float[50], 50), T.f("t2", DType.F32, new float[4], 2, 2),
                T.f("t3", DType.F32, new float[54], 9, 2, 3), T.i64("pos", new long[] {1, 1, 2}));
        Path out = dir.resolve("out/out.safetensors");
        MergePipeline pipeline = new MergePipeline(new Linear(), spec(null, 2, "m", out, null, 0), null);
        pipeline.blockElements(10);
        KilnException e = assertThrows(KilnException.class, pipeline::run);
        assertTrue(e.getMessage().contains("'t0'") && e.getMessage().contains("model 2")
                && e.getMessage().contains("1 NaN"), e.getMessage());
        assertFalse(Files.exists(out));
    }

    @Test
    void methodsThatDoNotDeclareThemselvesElementwiseAreMergedWhole() {
        assertFalse(new MergeTestTechniques.Linear(true).elementwise());
        assertTrue(new Linear().elementwise());
        assertTrue(MergePipeline.blockRandom(7, "a", 0).nextLong() != MergePipeline.blockRandom(7, "a", 1)
                .nextLong());
        assertEquals(MergePipeline.blockRandom(7, "a", 3).nextLong(), MergePipeline.blockRandom(7, "a", 3)
                .nextLong());
    }
}
