package dev.kiln.core.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.ParameterStore;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.compress.CompressedCheckpoints;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Low-rank Linear layers run as two thin matmuls, checked against float64 references computed here. */
class FactoredLinearTest {
    @TempDir
    Path dir;

    private static float[] random(Random rng, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) rng.nextGaussian();
        }
        return out;
    }

    /** y[n][o] = sum_i x[n][i] * w[o][i] + b[o] in float64, with w given row-major [out][in]. */
    private static double[] affine(float[] x, int rows, int in, double[] w, int out, float[] b, boolean relu) {
        double[] y = new double[rows * out];
        for (int n = 0; n < rows; n++) {
            for (int o = 0; o < out; o++) {
                double s = b == null ? 0 : b[o];
                for (int i = 0; i < in; i++) {
                    s += x[n * in + i] * w[o * in + i];
                }
                y[n * out + o] = relu ? Math.max(0, s) : s;
            }
        }
        return y;
    }

    /** U [out, r] times V [r, in] in float64. */
    private static double[] product(float[] u, float[] v, int out, int r, int in) {
        double[] w = new double[out * in];
        for (int o = 0; o < out; o++) {
            for (int i = 0; i < in; i++) {
                double s = 0;
                for (int k = 0; k < r; k++) {
                    s += (double) u[o * r + k] * v[k * in + i];
                }
                w[o * in + i] = s;
            }
        }
        return w;
    }

    private static float[] toFloats(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    private static double[] toDoubles(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    private static void assertClose(double[] want, float[] got, double tol) {
        assertEquals(want.length, got.length);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], tol * Math.max(1, Math.abs(want[i])), "element " + i);
        }
    }

    @Test
    void forwardIsTwoThinMatmulsPlusBias() {
        Random rng = new Random(7);
        int n = 5;
        int in = 9;
        int out = 6;
        int r = 2;
        try (NDManager m = NDManager.newBaseManager()) {
            FactoredLinear layer = new FactoredLinear(r, out);
            layer.initialize(m, DataType.FLOAT32, new Shape(n, in));
            assertArrayEquals(new Shape[] {new Shape(n, out)}, layer.getOutputShapes(new Shape[] {new Shape(n, in)}));
            float[] u = random(rng, out * r);
            float[] v = random(rng, r * in);
            float[] b = random(rng, out);
            float[] x = random(rng, n * in);
            Map<String, NDArray> byName = new LinkedHashMap<>();
            layer.getDirectParameters().forEach(p -> byName.put(p.getKey(), p.getValue().getArray()));
            assertEquals(List.of("weight.v", "weight.u", "bias"), new ArrayList<>(byName.keySet()));
            assertEquals(new Shape(r, in), byName.get("weight.v").getShape());
            assertEquals(new Shape(out, r), byName.get("weight.u").getShape());
            byName.get("weight.u").set(u);
            byName.get("weight.v").set(v);
            byName.get("bias").set(b);
            NDArray y = layer.forward(new ParameterStore(m, false), new NDList(m.create(x, new Shape(n, in))), false)
                    .singletonOrThrow();
            assertEquals(new Shape(n, out), y.getShape());
            assertClose(affine(x, n, in, product(u, v, out, r, in), out, b, false), y.toFloatArray(), 1e-5);
        }
        assertThrows(KilnException.class, () -> new FactoredLinear(0, 3));
    }

    @Test
    void zooFactorsOnlyTheNamedLinearLayers() {
        try (NDManager m = NDManager.newBaseManager()) {
            KilnModel mlp = ModelZoo.build("mlp", Map.of("hidden", "20"), new Shape(1, 4, 4), 3, Map.of("fc1", 2))
                    .initialize(m, 1);
            assertEquals(List.of("fc1.weight.v", "fc1.weight.u", "fc1.bias", "head.weight", "head.bias"),
                    new ArrayList<>(mlp.parameters().keySet()));
            // (16 + 20) * 2 + 20 for fc1, 20 * 3 + 3 for the head.
            assertEquals(36 * 2 + 20 + 63, mlp.parameterCount());
            KilnModel cnn = ModelZoo.build("cnn", Map.of("width", "2", "hidden", "8"), new Shape(1, 8, 8), 4,
                    Map.of("fc1", 3, "fc", 1)).initialize(m, 1);
            assertEquals(new Shape(4, 1), cnn.parameters().get("fc.weight.u").getArray().getShape());
            assertFalse(cnn.parameters().containsKey("fc1.weight"));
            assertEquals(new Shape(8, 3), cnn.parameters().get("fc1.weight.u").getArray().getShape());
            assertEquals(new Shape(3, 4 * 2 * 2), cnn.parameters().get("fc1.weight.v").getArray().getShape());
            assertEquals(new Shape(2, 4), cnn.forward(new ParameterStore(m, false),
                    m.randomNormal(new Shape(2, 1, 8, 8)), false).getShape());

            KilnException unknown = assertThrows(KilnException.class, () -> ModelZoo.build("cnn", Map.of(),
                    new Shape(1, 8, 8), 4, Map.of("conv1", 2)));
            assertTrue(unknown.getMessage().contains("conv1") && unknown.getMessage().contains("fc1, fc"),
                    unknown.getMessage());
            KilnException zero = assertThrows(KilnException.class, () -> ModelZoo.build("mlp", Map.of(),
                    new Shape(1, 4, 4), 3, Map.of("head", 0)));
            assertTrue(zero.getMessage().contains("head") && zero.getMessage().contains("0"), zero.getMessage());
        }
    }

    private static Map<String, Object> entry(List<Long> shape, String format, Map<String, String> stored) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("shape", shape);
        e.put("dtype", "F32");
        e.put("stored", stored);
        e.put("metadata", Map.of("format", format));
        return e;
    }

    /** A compressed-v1 mlp checkpoint over 1x6x6 inputs, hidden 24,12, three classes. */
    private Path checkpoint(String fileName, List<String> names, Map<String, Object> tensors,
            Map<String, NDArray> arrays) throws Exception {
        Map<String, Object> record = new LinkedHashMap<>();
        record.put("compressor", "hand");
        record.put("params", Map.of());
        record.put("names", names);
        record.put("tensors", tensors);
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("kiln.format", "compressed-v1");
        meta.put("kiln.model", "mlp");
        meta.put("kiln.model.parameters", "{\"hidden\":\"24,12\"}");
        meta.put("kiln.data.classes", "[\"a\",\"b\",\"c\"]");
        meta.put("kiln.input.shape", "(1, 6, 6)");
        meta.put("kiln.normalization", "none");
        meta.put(CompressPipeline.METADATA_KEY, Json.MAPPER.writeValueAsString(record));
        Path file = dir.resolve(fileName);
        SafetensorsWriter.save(file, meta, arrays);
        return file;
    }

    private static final List<String> NAMES = List.of("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
            "head.weight", "head.bias");

    @Test
    void lowRankCheckpointLoadsFactoredWithTheDenseLogits() throws Exception {
        Random rng = new Random(11);
        // fc1 [24, 36] at rank 4 is cheaper factored (4 * 60 < 864); fc2 [12, 24] at rank 10 is not (360 > 288).
        float[] u1 = random(rng, 24 * 4);
        float[] v1 = random(rng, 4 * 36);
        float[] b1 = random(rng, 24);
        float[] u2 = random(rng, 12 * 10);
        float[] v2 = random(rng, 10 * 24);
        float[] b2 = random(rng, 12);
        float[] wh = random(rng, 3 * 12);
        float[] bh = random(rng, 3);
        float[] x = random(rng, 7 * 36);
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            arrays.put("fc1.weight.u", m.create(u1, new Shape(24, 4)));
            arrays.put("fc1.weight.v", m.create(v1, new Shape(4, 36)));
            arrays.put("fc1.bias", m.create(b1));
            arrays.put("fc2.weight.u", m.create(u2, new Shape(12, 10)));
            arrays.put("fc2.weight.v", m.create(v2, new Shape(10, 24)));
            arrays.put("fc2.bias", m.create(b2));
            arrays.put("head.weight", m.create(wh, new Shape(3, 12)));
            arrays.put("head.bias", m.create(bh));
            Map<String, Object> tensors = new LinkedHashMap<>();
            tensors.put("fc1.weight", entry(List.of(24L, 36L), "low-rank", Map.of(".u", "fc1.weight.u", ".v",
                    "fc1.weight.v")));
            tensors.put("fc2.weight", entry(List.of(12L, 24L), "low-rank", Map.of(".u", "fc2.weight.u", ".v",
                    "fc2.weight.v")));
            Path file = checkpoint("low-rank.safetensors", NAMES, tensors, arrays);

            CheckpointModels.Loaded loaded = CheckpointModels.load(file, m);
            KilnModel model = loaded.model();
            assertEquals(List.of("fc1.weight.v", "fc1.weight.u", "fc1.bias", "fc2.weight", "fc2.bias",
                    "head.weight", "head.bias"), new ArrayList<>(model.parameters().keySet()));
            assertArrayEquals(u1, model.parameters().get("fc1.weight.u").getArray().toFloatArray());
            assertArrayEquals(v1, model.parameters().get("fc1.weight.v").getArray().toFloatArray());
            long dense = 24 * 36 + 24 + 12 * 24 + 12 + 3 * 12 + 3;
            assertEquals(dense - 24 * 36 + 4 * (24 + 36), model.parameterCount());

            NDArray input = m.create(x, new Shape(7, 1, 6, 6));
            float[] logits = model.forward(new ParameterStore(m, false), input, false).toFloatArray();

            // Saved again as a plain checkpoint (as after fine-tuning), it reloads with the same factored layers.
            Path resaved = dir.resolve("resaved.safetensors");
            Map<String, String> meta = new LinkedHashMap<>(loaded.metadata());
            meta.put("kiln.format", "model-v1");
            meta.remove(CompressPipeline.METADATA_KEY);
            SafetensorsWriter.save(resaved, meta, model.exportParameters(m));
            KilnModel again = CheckpointModels.load(resaved, m).model();
            assertEquals(model.parameterCount(), again.parameterCount());
            assertArrayEquals(logits, again.forward(new ParameterStore(m, false), input, false).toFloatArray());

            // The dense reconstruction, loaded into an ordinary mlp.
            KilnModel reference = ModelZoo.build("mlp", Map.of("hidden", "24,12"), new Shape(1, 6, 6), 3)
                    .initialize(m, 0);
            reference.loadParameters(CompressedCheckpoints.load(file, m));
            assertEquals(dense, reference.parameterCount());
            float[] denseLogits = reference.forward(new ParameterStore(m, false), input, false).toFloatArray();
            assertClose(toDoubles(denseLogits), logits, 1e-4);

            // And an independent float64 forward pass.
            double[] h1 = affine(x, 7, 36, product(u1, v1, 24, 4, 36), 24, b1, true);
            double[] h2 = affine(toFloats(h1), 7, 24, product(u2, v2, 12, 10, 24), 12, b2, true);
            double[] out = affine(toFloats(h2), 7, 12, toDoubles(wh), 3, bh, false);
            assertClose(out, logits, 1e-4);
        }
    }

    @Test
    void otherCompressedFormatsStillLoadDense() throws Exception {
        Random rng = new Random(3);
        try (NDManager m = NDManager.newBaseManager()) {
            byte[] q = new byte[24 * 36];
            for (int i = 0; i < q.length; i++) {
                q[i] = (byte) (rng.nextInt(255) - 127);
            }
            float[] scale = random(rng, 24);
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            arrays.put("fc1.weight.q", m.create(q, new Shape(24, 36)));
            arrays.put("fc1.weight.scale", m.create(scale));
            arrays.put("fc1.bias", m.create(random(rng, 24)));
            // low-rank-sparse carries a residual, so it stays dense even at a cheap rank.
            arrays.put("fc2.weight.u", m.create(random(rng, 12), new Shape(12, 1)));
            arrays.put("fc2.weight.v", m.create(random(rng, 24), new Shape(1, 24)));
            arrays.put("fc2.weight.residual", m.create(new float[] {2.5f}));
            arrays.put("fc2.weight.residual_index", m.create(new int[] {5}));
            arrays.put("fc2.bias", m.create(random(rng, 12)));
            arrays.put("head.weight", m.create(random(rng, 36), new Shape(3, 12)));
            arrays.put("head.bias", m.create(random(rng, 3)));
            Map<String, Object> tensors = new LinkedHashMap<>();
            tensors.put("fc1.weight", entry(List.of(24L, 36L), "int8-symmetric-per-channel", Map.of(".q",
                    "fc1.weight.q", ".scale", "fc1.weight.scale")));
            tensors.put("fc2.weight", entry(List.of(12L, 24L), "low-rank-sparse", Map.of(".u", "fc2.weight.u",
                    ".v", "fc2.weight.v", ".residual", "fc2.weight.residual", ".residual_index",
                    "fc2.weight.residual_index")));
            Path file = checkpoint("int8.safetensors", NAMES, tensors, arrays);
            KilnModel model = CheckpointModels.load(file, m).model();
            assertEquals(NAMES, new ArrayList<>(model.parameters().keySet()));
            float[] w1 = model.parameters().get("fc1.weight").getArray().toFloatArray();
            for (int o = 0; o < 24; o++) {
                for (int i = 0; i < 36; i++) {
                    assertEquals(q[o * 36 + i] * scale[o], w1[o * 36 + i], 1e-5);
                }
            }
            assertEquals(2.5f + arrays.get("fc2.weight.u").getFloat(0, 0) * arrays.get("fc2.weight.v").getFloat(0,
                    5), model.parameters().get("fc2.weight").getArray().getFloat(0, 5), 1e-5);
            assertFalse(model.parameters().containsKey("fc2.weight.u"));
        }
    }

    @Test
    void mismatchedFactorsNameTheTensor() throws Exception {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            arrays.put("fc1.weight.u", m.zeros(new Shape(24, 2)));
            arrays.put("fc1.weight.v", m.zeros(new Shape(3, 36)));
            arrays.put("fc1.bias", m.zeros(new Shape(24)));
            arrays.put("fc2.weight", m.zeros(new Shape(12, 24)));
            arrays.put("fc2.bias", m.zeros(new Shape(12)));
            arrays.put("head.weight", m.zeros(new Shape(3, 12)));
            arrays.put("head.bias", m.zeros(new Shape(3)));
            Path file = checkpoint("bad.safetensors", NAMES, Map.of("fc1.weight", entry(List.of(24L, 36L),
                    "low-rank", Map.of(".u", "fc1.weight.u", ".v", "fc1.weight.v"))), arrays);
            KilnException e = assertThrows(KilnException.class, () -> CheckpointModels.load(file, m));
            assertTrue(e.getMessage().contains("fc1.weight") && e.getMessage().contains("[24, 2]"), e.getMessage());
        }
    }
}
