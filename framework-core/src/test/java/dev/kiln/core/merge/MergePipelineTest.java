package dev.kiln.core.merge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.ShardedCheckpoint;
import dev.kiln.core.safetensors.ShardedCheckpointWriter;
import dev.kiln.core.safetensors.TensorSpec;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeMethod;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MergePipelineTest {
    @TempDir
    Path dir;

    /** A tensor to write: float values (for float dtypes) or longs (for I64). */
    record T(String name, DType dtype, long[] shape, float[] floats, long[] longs) {
        static T f(String name, DType dtype, float[] values, long... shape) {
            return new T(name, dtype, shape, values, null);
        }

        static T i64(String name, long[] values) {
            return new T(name, DType.I64, new long[] {values.length}, null, values);
        }
    }

    static void write(Path file, T... tensors) {
        List<TensorSpec> specs = new ArrayList<>();
        for (T t : tensors) {
            specs.add(new TensorSpec(t.name(), t.dtype(), t.shape()));
        }
        try (SafetensorsWriter w = SafetensorsWriter.create(file, Map.of(), specs)) {
            for (T t : tensors) {
                if (t.floats() != null) {
                    w.writeFloats(t.name(), t.floats());
                } else {
                    ByteBuffer b = ByteBuffer.allocate(t.longs().length * 8).order(ByteOrder.LITTLE_ENDIAN);
                    for (long v : t.longs()) {
                        b.putLong(v);
                    }
                    b.flip();
                    w.write(t.name(), b);
                }
            }
            w.commit();
        }
    }

    static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    private MergeSpec spec(String method, Path base, List<MergeSpec.ModelInput> models, Path out, int threads,
            DType outputDtype, long maxShard, boolean allowNonFinite) {
        return new MergeSpec(method, Map.of(), base, models, out, threads, 7L, outputDtype, maxShard,
                allowNonFinite);
    }

    private static List<String> filesIn(Path folder) throws Exception {
        try (Stream<Path> s = Files.list(folder)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void linearMergeMatchesAFloat64ReferenceAndKeepsIntegerTensorsFromTheFirstModel() throws Exception {
        Random r = new Random(1);
        double[] weights = {1.0, 2.0, 0.5};
        float[][] a = new float[3][];
        float[][] b = new float[3][];
        List<MergeSpec.ModelInput> models = new ArrayList<>();
        for (int m = 0; m < 3; m++) {
            a[m] = random(r, 12);
            b[m] = random(r, 5);
            Path file = dir.resolve("m" + m + ".safetensors");
            write(file, T.f("a", DType.F32, a[m], 3, 4), T.f("b", DType.F32, b[m], 5),
                    T.i64("pos", new long[] {m, 10 + m, 20, 30}));
            models.add(new MergeSpec.ModelInput(file, weights[m], Map.of()));
        }
        Path out = dir.resolve("out/merged.safetensors");
        List<Event> events = new ArrayList<>();
        Map<String, Object> report = new MergePipeline(new MergeTestTechniques.Linear(true),
                spec("test-linear", null, models, out, 2, null, 0, false), events::add).run();

        try (SafetensorsReader reader = SafetensorsReader.open(out)) {
            assertEquals(List.of("a", "b", "pos"), reader.names());
            float[] gotA = reader.readFloats("a");
            float[] gotB = reader.readFloats("b");
            for (int i = 0; i < 12; i++) {
                double want = (weights[0] * a[0][i] + weights[1] * a[1][i] + weights[2] * a[2][i]) / 3.5;
                assertEquals(want, gotA[i], 1e-5, "a[" + i + "]");
            }
            for (int i = 0; i < 5; i++) {
                double want = (weights[0] * b[0][i] + weights[1] * b[1][i] + weights[2] * b[2][i]) / 3.5;
                assertEquals(want, gotB[i], 1e-5, "b[" + i + "]");
            }
            ByteBuffer pos = ByteBuffer.wrap(reader.readBytes("pos")).order(ByteOrder.LITTLE_ENDIAN);
            assertArrayEquals(new long[] {0, 10, 20, 30},
                    new long[] {pos.getLong(0), pos.getLong(8), pos.getLong(16), pos.getLong(24)});
            assertEquals(DType.I64, reader.info("pos").dtype());
            assertEquals("test-linear", reader.metadata().get("kiln.merge.method"));
            assertTrue(reader.metadata().get("kiln.merge.inputs").contains("m2.safetensors"));
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> totals = (Map<String, Object>) report.get("totals");
        assertEquals(3, totals.get("tensors"));
        assertEquals((12L + 5 + 4 * 2) * 4 * 3, ((Number) totals.get("bytesIn")).longValue());
        JsonNode written = Json.MAPPER.readTree(MergePipeline.reportFile(out).toFile());
        assertEquals(12, written.path("tensors").path("a").path("numel").asInt());
        assertTrue(written.path("tensors").path("pos").path("copied").asBoolean());
        assertTrue(events.stream().anyMatch(e -> e.message() != null && e.message().startsWith("Merged 3 tensors")));
        assertEquals(List.of("merged.merge-report.json", "merged.safetensors"), filesIn(out.getParent()));
    }

    @Test
    void reportsKeptDensityAndSignConflictOfTheTaskVectors() throws Exception {
        Random r = new Random(2);
        int n = 40;
        float[] base = new float[n];
        float[] m1 = new float[n];
        float[] m2 = new float[n];
        int nonZero = 0;
        int conflicts = 0;
        for (int i = 0; i < n; i++) {
            // Small integers keep every sum exact in float32, so the expected counts are exact too.
            base[i] = r.nextInt(9) - 4;
            int d1 = r.nextInt(3) - 1;
            int d2 = r.nextInt(3) - 1;
            m1[i] = base[i] + d1;
            m2[i] = base[i] + d2;
            nonZero += d1 + d2 != 0 ? 1 : 0;
            conflicts += d1 * d2 < 0 ? 1 : 0;
        }
        write(dir.resolve("base.safetensors"), T.f("w", DType.F32, base, 4, 10));
        write(dir.resolve("m1.safetensors"), T.f("w", DType.F32, m1, 4, 10));
        write(dir.resolve("m2.safetensors"), T.f("w", DType.F32, m2, 4, 10));
        Path out = dir.resolve("merged.safetensors");
        Map<String, Object> report = new MergePipeline(new MergeTestTechniques.Linear(false),
                spec("test-linear", dir.resolve("base.safetensors"),
                        List.of(MergeSpec.ModelInput.of(dir.resolve("m1.safetensors")),
                                new MergeSpec.ModelInput(dir.resolve("m2.safetensors"), -1.0, Map.of())),
                        out, 1, null, 0, false), null).run();
        // merged = m1 - m2 = d1 - d2; minus the base: d1 - d2 - base.
        int keptLinear = 0;
        for (int i = 0; i < n; i++) {
            keptLinear += (m1[i] - m2[i]) - base[i] != 0 ? 1 : 0;
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> w = (Map<String, Object>) ((Map<String, Object>) report.get("tensors")).get("w");
        assertEquals(keptLinear / (double) n, (double) w.get("keptDensity"), 1e-12);
        assertEquals(conflicts / (double) n, (double) w.get("signConflict"), 1e-12);
        assertTrue(conflicts > 0 && nonZero > 0, "the random case must contain conflicts");
    }

    @Test
    void keepsF16AndConvertsToTheRequestedOutputDtype() throws Exception {
        Random r = new Random(3);
        float[] x = random(r, 16);
        float[] y = random(r, 16);
        write(dir.resolve("x.safetensors"), T.f("w", DType.F16, x, 16));
        write(dir.resolve("y.safetensors"), T.f("w", DType.F16, y, 16));
        List<MergeSpec.ModelInput> models = List.of(MergeSpec.ModelInput.of(dir.resolve("x.safetensors")),
                MergeSpec.ModelInput.of(dir.resolve("y.safetensors")));
        Path f16 = dir.resolve("f16.safetensors");
        new MergePipeline(new MergeTestTechniques.Linear(true), spec("test-linear", null, models, f16, 1, null, 0,
                false), null).run();
        Path bf16 = dir.resolve("bf16.safetensors");
        new MergePipeline(new MergeTestTechniques.Linear(true), spec("test-linear", null, models, bf16, 1,
                DType.BF16, 0, false), null).run();
        try (SafetensorsReader a = SafetensorsReader.open(f16); SafetensorsReader b = SafetensorsReader.open(bf16);
                SafetensorsReader xr = SafetensorsReader.open(dir.resolve("x.safetensors"));
                SafetensorsReader yr = SafetensorsReader.open(dir.resolve("y.safetensors"))) {
            assertEquals(DType.F16, a.info("w").dtype());
            assertEquals(DType.BF16, b.info("w").dtype());
            float[] xs = xr.readFloats("w");
            float[] ys = yr.readFloats("w");
            float[] got16 = a.readFloats("w");
            float[] gotB = b.readFloats("w");
            for (int i = 0; i < 16; i++) {
                double want = (xs[i] + (double) ys[i]) / 2;
                // F16 has an 11-bit significand and BF16 an 8-bit one: tolerances relative to the magnitude.
                assertEquals(want, got16[i], Math.abs(want) * 1e-3 + 1e-4, "f16[" + i + "]");
                assertEquals(want, gotB[i], Math.abs(want) * 8e-3 + 1e-4, "bf16[" + i + "]");
            }
        }
    }

    @Test
    void readsShardedInputsAndWritesShardedOutputWithAnIndex() throws Exception {
        Random r = new Random(4);
        String[] names = {"l0.w", "l1.w", "l2.w"};
        float[][][] values = new float[2][3][];
        List<MergeSpec.ModelInput> models = new ArrayList<>();
        for (int m = 0; m < 2; m++) {
            Path folder = Files.createDirectories(dir.resolve("model" + m));
            List<TensorSpec> specs = new ArrayList<>();
            for (String name : names) {
                specs.add(new TensorSpec(name, DType.F32, new long[] {8}));
            }
            try (ShardedCheckpointWriter w = ShardedCheckpointWriter.create(folder, "model", 40, Map.of(), specs)) {
                for (int t = 0; t < 3; t++) {
                    values[m][t] = random(r, 8);
                    w.writeFloats(names[t], values[m][t]);
                }
                w.commit();
            }
            models.add(MergeSpec.ModelInput.of(folder));
        }
        Path out = dir.resolve("out/merged.safetensors");
        new MergePipeline(new MergeTestTechniques.Linear(true), spec("test-linear", null, models, out, 2, null, 64,
                false), null).run();
        Path index = out.resolveSibling("merged.safetensors.index.json");
        assertTrue(Files.exists(index));
        assertFalse(Files.exists(out), "a sharded merge writes shards and an index, not the single file");
        try (ShardedCheckpoint merged = ShardedCheckpoint.open(index)) {
            assertEquals(2, merged.shards().size(), "3 tensors of 32 bytes with 64 bytes per shard");
            for (int t = 0; t < 3; t++) {
                float[] got = merged.readFloats(names[t]);
                for (int i = 0; i < 8; i++) {
                    assertEquals((values[0][t][i] + (double) values[1][t][i]) / 2, got[i], 1e-6);
                }
            }
        }
    }

    @Test
    void parallelResultEqualsSingleThreadResultBitForBit() throws Exception {
        Random r = new Random(5);
        int count = 12;
        T[] base = new T[count];
        T[] m1 = new T[count];
        T[] m2 = new T[count];
        for (int t = 0; t < count; t++) {
            base[t] = T.f("t" + t, DType.F32, random(r, 50), 5, 10);
            m1[t] = T.f("t" + t, DType.F32, random(r, 50), 5, 10);
            m2[t] = T.f("t" + t, DType.F32, random(r, 50), 5, 10);
        }
        write(dir.resolve("base.safetensors"), base);
        write(dir.resolve("m1.safetensors"), m1);
        write(dir.resolve("m2.safetensors"), m2);
        List<MergeSpec.ModelInput> models = List.of(MergeSpec.ModelInput.of(dir.resolve("m1.safetensors")),
                new MergeSpec.ModelInput(dir.resolve("m2.safetensors"), 1.0, Map.of("density", 0.3)));
        MergeMethod method = new MergeTestTechniques.RandomMask();
        Path one = dir.resolve("one.safetensors");
        Path four = dir.resolve("four.safetensors");
        Path otherSeed = dir.resolve("seed.safetensors");
        new MergePipeline(method, spec("test-random-mask", dir.resolve("base.safetensors"), models, one, 1, null, 0,
                false), null).run();
        new MergePipeline(method, spec("test-random-mask", dir.resolve("base.safetensors"), models, four, 4, null,
                0, false), null).run();
        new MergePipeline(method, new MergeSpec("test-random-mask", Map.of(), dir.resolve("base.safetensors"),
                models, otherSeed, 4, 8L, null, 0, false), null).run();
        try (SafetensorsReader a = SafetensorsReader.open(one); SafetensorsReader b = SafetensorsReader.open(four);
                SafetensorsReader c = SafetensorsReader.open(otherSeed)) {
            boolean seedMatters = false;
            for (int t = 0; t < count; t++) {
                assertArrayEquals(a.readBytes("t" + t), b.readBytes("t" + t), "tensor t" + t);
                seedMatters |= !java.util.Arrays.equals(a.readBytes("t" + t), c.readBytes("t" + t));
            }
            assertTrue(seedMatters, "another seed must give other masks");
        }
        assertTrue(MergePipeline.random(7, "a").nextLong() != MergePipeline.random(7, "b").nextLong());
    }

    private KilnException failure(MergeMethod method, Path base, List<MergeSpec.ModelInput> models, Path out) {
        KilnException e = assertThrows(KilnException.class, () -> new MergePipeline(method,
                spec("test", base, models, out, 2, null, 0, false), null).run());
        assertFalse(Files.exists(out), "no output after a failed merge");
        return e;
    }

    @Test
    void badInputsFailWithNamedErrorsAndLeaveNoOutput() throws Exception {
        Path a = dir.resolve("a.safetensors");
        write(a, T.f("x", DType.F32, new float[6], 2, 3), T.f("y", DType.F32, new float[2], 2));
        Path missing = dir.resolve("missing.safetensors");
        write(missing, T.f("x", DType.F32, new float[6], 2, 3));
        Path shape = dir.resolve("shape.safetensors");
        write(shape, T.f("x", DType.F32, new float[6], 3, 2), T.f("y", DType.F32, new float[2], 2));
        Path dtype = dir.resolve("dtype.safetensors");
        write(dtype, T.f("x", DType.F16, new float[6], 2, 3), T.f("y", DType.F32, new float[2], 2));
        Path nan = dir.resolve("nan.safetensors");
        write(nan, T.f("x", DType.F32, new float[6], 2, 3),
                T.f("y", DType.F32, new float[] {1, Float.POSITIVE_INFINITY}, 2));
        Path out = Files.createDirectories(dir.resolve("out")).resolve("merged.safetensors");
        MergeMethod linear = new MergeTestTechniques.Linear(true);

        String m = failure(linear, null, List.of(MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(missing)), out)
                .getMessage();
        assertTrue(m.contains("'y'") && m.contains("missing from model 2") && m.contains("missing.safetensors"), m);
        m = failure(linear, null, List.of(MergeSpec.ModelInput.of(missing), MergeSpec.ModelInput.of(a)), out)
                .getMessage();
        assertTrue(m.contains("'y'") && m.contains("model 2"), m);
        m = failure(linear, null, List.of(MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(shape)), out)
                .getMessage();
        assertTrue(m.contains("'x'") && m.contains("[3, 2]") && m.contains("[2, 3]"), m);
        m = failure(linear, null, List.of(MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(dtype)), out)
                .getMessage();
        assertTrue(m.contains("'x'") && m.contains("F16") && m.contains("F32"), m);
        m = failure(linear, null, List.of(MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(nan)), out)
                .getMessage();
        assertTrue(m.contains("'y'") && m.contains("nan.safetensors") && m.contains("NaN or infinite"), m);
        m = failure(linear, null, List.of(MergeSpec.ModelInput.of(a),
                MergeSpec.ModelInput.of(dir.resolve("nope.safetensors"))), out).getMessage();
        assertTrue(m.contains("nope.safetensors") && m.contains("does not exist"), m);
        m = failure(new MergeTestTechniques.RandomMask(), null, List.of(MergeSpec.ModelInput.of(a)), out)
                .getMessage();
        assertTrue(m.contains("needs a base model"), m);
        assertEquals(List.of(), filesIn(out.getParent()), "no temporary files left either");

        // allowNonFinite lets the same input through.
        new MergePipeline(linear, spec("test", null, List.of(MergeSpec.ModelInput.of(a),
                MergeSpec.ModelInput.of(nan)), out, 1, null, 0, true), null).run();
        try (SafetensorsReader r = SafetensorsReader.open(out)) {
            assertEquals(Float.POSITIVE_INFINITY, r.readFloats("y")[1]);
        }
    }

    @Test
    void aFailedMergeLeavesAnExistingOutputUntouched() throws Exception {
        Path a = dir.resolve("a.safetensors");
        write(a, T.f("x", DType.F32, new float[] {1, 2}, 2));
        Path nan = dir.resolve("nan.safetensors");
        write(nan, T.f("x", DType.F32, new float[] {Float.NaN, 2}, 2));
        Path out = dir.resolve("merged.safetensors");
        byte[] before = "previous".getBytes();
        Files.write(out, before);
        assertThrows(KilnException.class, () -> new MergePipeline(new MergeTestTechniques.Linear(true),
                spec("test", null, List.of(MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(nan)), out, 1, null,
                        0, false), null).run());
        assertArrayEquals(before, Files.readAllBytes(out));
        assertNotNull(out);
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }
}
