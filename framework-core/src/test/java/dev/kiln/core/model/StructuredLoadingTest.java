package dev.kiln.core.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.ParameterStore;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.compress.CompressedCheckpoints;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Structured-pruned checkpoints load as genuinely smaller layers whose logits equal those of the full-size model with
 * the removed units zeroed (weight row, bias, batch-norm scale and shift), built here independently of the loader's
 * slicing; the mlp is also checked against a float64 forward pass written out by hand.
 */
class StructuredLoadingTest {
    @TempDir
    Path dir;

    private static final Shape SAMPLE = new Shape(1, 8, 8);
    private static final int CLASSES = 3;

    /** Random kept rows (ascending, distinct), {@code keep} of {@code rows}. */
    private static long[] keep(Random rng, int rows, int keep) {
        List<Integer> all = new ArrayList<>();
        for (int i = 0; i < rows; i++) {
            all.add(i);
        }
        java.util.Collections.shuffle(all, rng);
        return new TreeSet<>(all.subList(0, keep)).stream().mapToLong(Integer::longValue).toArray();
    }

    /** A full-size model with random weights and random (valid) batch-norm statistics, as float arrays by name. */
    private static Map<String, float[]> randomParameters(KilnModel model, Random rng) {
        Map<String, float[]> out = new LinkedHashMap<>();
        model.parameters().forEach((name, p) -> {
            float[] v = new float[(int) p.getArray().size()];
            for (int i = 0; i < v.length; i++) {
                double g = rng.nextGaussian();
                v[i] = (float) (name.endsWith("running_var") ? 0.5 + rng.nextDouble()
                        : name.matches(".*bn[0-9]*\\.weight|bn\\.weight") ? 1 + 0.2 * g
                        : name.contains("bn") ? 0.3 * g : 0.4 * g);
            }
            out.put(name, v);
        });
        return out;
    }

    /**
     * Writes a compressed-v1 checkpoint in which each weight of {@code kept} is stored in structured format (only the
     * kept rows plus their indices) and everything else as it is.
     */
    private Path checkpoint(String model, Map<String, String> params, KilnModel full, Map<String, float[]> values,
            Map<String, long[]> kept, NDManager m) throws Exception {
        Map<String, NDArray> arrays = new LinkedHashMap<>();
        Map<String, Object> tensors = new LinkedHashMap<>();
        for (Map.Entry<String, float[]> e : values.entrySet()) {
            String name = e.getKey();
            Shape shape = full.parameters().get(name).getArray().getShape();
            NDArray dense = m.create(e.getValue(), shape);
            long[] rows = kept.get(name);
            if (rows == null) {
                arrays.put(name, dense);
                continue;
            }
            arrays.put(name + ".rows", dense.get(m.create(rows)));
            arrays.put(name + ".row_index", m.create(rows));
            Map<String, Object> entry = new LinkedHashMap<>();
            entry.put("shape", Arrays.stream(shape.getShape()).boxed().toList());
            entry.put("dtype", "F32");
            entry.put("stored", Map.of(".rows", name + ".rows", ".row_index", name + ".row_index"));
            entry.put("metadata", Map.of("format", "structured"));
            tensors.put(name, entry);
        }
        Map<String, Object> record = new LinkedHashMap<>();
        record.put("compressor", "structured");
        record.put("params", Map.of());
        record.put("names", List.copyOf(values.keySet()));
        record.put("tensors", tensors);
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("kiln.format", "compressed-v1");
        meta.put("kiln.model", model);
        meta.put("kiln.model.parameters", Json.MAPPER.writeValueAsString(params));
        meta.put("kiln.data.classes", "[\"a\",\"b\",\"c\"]");
        meta.put("kiln.input.shape", SAMPLE.toString());
        meta.put("kiln.normalization", "none");
        meta.put(CompressPipeline.METADATA_KEY, Json.MAPPER.writeValueAsString(record));
        Path file = dir.resolve(model + ".safetensors");
        SafetensorsWriter.save(file, meta, arrays);
        return file;
    }

    /**
     * The reference: the full-size model on the dense reconstruction (zero rows), with each removed unit of a
     * narrowed layer also losing its bias entry and its batch norm's scale and shift, so its output is exactly 0.
     */
    private static KilnModel zeroUnitReference(String model, Map<String, String> params, Path file,
            Map<String, long[]> removedUnits, Map<String, List<String>> norms, NDManager m) {
        KilnModel ref = ModelZoo.build(model, params, SAMPLE, CLASSES).initialize(m, 0);
        Map<String, NDArray> dense = CompressedCheckpoints.load(file, m);
        removedUnits.forEach((layer, removed) -> {
            List<String> zeroed = new ArrayList<>(List.of(layer + ".bias"));
            for (String norm : norms.getOrDefault(layer, List.of())) {
                zeroed.add(norm + ".weight");
                zeroed.add(norm + ".bias");
            }
            for (String name : zeroed) {
                NDArray a = dense.get(name);
                if (a == null) {
                    continue;
                }
                float[] v = a.toFloatArray();
                for (long r : removed) {
                    v[(int) r] = 0;
                }
                dense.put(name, m.create(v, a.getShape()));
            }
        });
        ref.loadParameters(dense);
        return ref;
    }

    private static long[] removed(long[] kept, int rows) {
        TreeSet<Long> all = new TreeSet<>();
        for (long i = 0; i < rows; i++) {
            all.add(i);
        }
        for (long k : kept) {
            all.remove(k);
        }
        return all.stream().mapToLong(Long::longValue).toArray();
    }

    private static void assertClose(float[] want, float[] got, double tol) {
        assertEquals(want.length, got.length);
        double max = 0;
        for (int i = 0; i < want.length; i++) {
            max = Math.max(max, Math.abs(want[i] - got[i]) / Math.max(1, Math.abs(want[i])));
        }
        assertTrue(max <= tol, "max relative difference " + max);
    }

    /** Loads, checks parameter count and logits against the zero-unit reference, and returns the smaller model. */
    private KilnModel check(String model, Map<String, String> params, Map<String, long[]> keptByLayer,
            Map<String, long[]> keptOther, long expectedParameters, Random rng) throws Exception {
        try (NDManager m = NDManager.newBaseManager()) {
            KilnModel full = ModelZoo.build(model, params, SAMPLE, CLASSES).initialize(m, 0);
            Map<String, float[]> values = randomParameters(full, rng);
            Map<String, long[]> kept = new LinkedHashMap<>(keptOther);
            keptByLayer.forEach((layer, rows) -> kept.put(layer + ".weight", rows));
            Path file = checkpoint(model, params, full, values, kept, m);

            KilnModel small = CheckpointModels.load(file, m).model();
            assertEquals(expectedParameters, small.parameterCount());
            assertTrue(small.parameterCount() < full.parameterCount());

            Map<String, long[]> removed = new LinkedHashMap<>();
            Map<String, List<String>> norms = new LinkedHashMap<>();
            for (ModelZoo.Shrinkable u : ModelZoo.shrinkable(model, params, SAMPLE, CLASSES)) {
                if (keptByLayer.containsKey(u.layer())) {
                    removed.put(u.layer(), removed(keptByLayer.get(u.layer()), u.width()));
                    norms.put(u.layer(), u.norms());
                }
            }
            assertEquals(keptByLayer.keySet(), removed.keySet(), "every narrowed layer is shrinkable");
            KilnModel ref = zeroUnitReference(model, params, file, removed, norms, m);
            NDArray x = m.randomNormal(new Shape(5).addAll(SAMPLE));
            float[] got = small.forward(new ParameterStore(m, false), x, false).toFloatArray();
            float[] want = ref.forward(new ParameterStore(m, false), x, false).toFloatArray();
            assertClose(want, got, 1e-4);

            // Saved plain (as after fine-tuning), it reloads just as small with the same logits.
            Path resaved = dir.resolve(model + "-plain.safetensors");
            Map<String, String> meta = new LinkedHashMap<>(CheckpointModels.load(file, m).metadata());
            meta.put("kiln.format", "model-v1");
            meta.remove(CompressPipeline.METADATA_KEY);
            SafetensorsWriter.save(resaved, meta, small.exportParameters(m));
            KilnModel again = CheckpointModels.load(resaved, m).model();
            assertEquals(expectedParameters, again.parameterCount());
            assertArrayEquals(got, again.forward(new ParameterStore(m, false), x, false).toFloatArray());
            return small;
        }
    }

    @Test
    void mlpHiddenLayersShrinkAndMatchAFloat64ForwardPass() throws Exception {
        Random rng = new Random(5);
        Map<String, String> params = Map.of("hidden", "12,10");
        long[] k1 = keep(rng, 12, 7);
        long[] k2 = keep(rng, 10, 4);
        long[] kh = keep(rng, 3, 2);
        try (NDManager m = NDManager.newBaseManager()) {
            KilnModel full = ModelZoo.build("mlp", params, SAMPLE, CLASSES).initialize(m, 0);
            Map<String, float[]> v = randomParameters(full, rng);
            // The head is structured too: it stays full size, its removed row (a class) is zero weights.
            Path file = checkpoint("mlp", params, full, v, Map.of("fc1.weight", k1, "fc2.weight", k2,
                    "head.weight", kh), m);
            KilnModel small = CheckpointModels.load(file, m).model();
            assertEquals(new Shape(7, 64), small.parameters().get("fc1.weight").getArray().getShape());
            assertEquals(new Shape(4, 7), small.parameters().get("fc2.weight").getArray().getShape());
            assertEquals(new Shape(3, 4), small.parameters().get("head.weight").getArray().getShape());
            assertEquals(7 * 64 + 7 + 4 * 7 + 4 + 3 * 4 + 3, small.parameterCount());

            float[] x = new float[5 * 64];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rng.nextGaussian();
            }
            float[] got = small.forward(new ParameterStore(m, false), m.create(x, new Shape(5, 1, 8, 8)), false)
                    .toFloatArray();
            // float64: only kept units exist; the head's removed row gives logit = bias.
            boolean[] headKept = new boolean[3];
            for (long r : kh) {
                headKept[(int) r] = true;
            }
            for (int n = 0; n < 5; n++) {
                double[] h1 = new double[k1.length];
                for (int a = 0; a < k1.length; a++) {
                    double s = v.get("fc1.bias")[(int) k1[a]];
                    for (int i = 0; i < 64; i++) {
                        s += (double) v.get("fc1.weight")[(int) k1[a] * 64 + i] * x[n * 64 + i];
                    }
                    h1[a] = Math.max(0, s);
                }
                double[] h2 = new double[k2.length];
                for (int b = 0; b < k2.length; b++) {
                    double s = v.get("fc2.bias")[(int) k2[b]];
                    for (int a = 0; a < k1.length; a++) {
                        s += (double) v.get("fc2.weight")[(int) k2[b] * 12 + (int) k1[a]] * h1[a];
                    }
                    h2[b] = Math.max(0, s);
                }
                for (int c = 0; c < 3; c++) {
                    double s = v.get("head.bias")[c];
                    for (int b = 0; b < k2.length && headKept[c]; b++) {
                        s += (double) v.get("head.weight")[c * 10 + (int) k2[b]] * h2[b];
                    }
                    assertEquals(s, got[n * 3 + c], 1e-4 * Math.max(1, Math.abs(s)), "sample " + n + " class " + c);
                }
            }
        }
        // And the same model through the generic check against the zero-unit full-size model.
        check("mlp", params, Map.of("fc1", k1, "fc2", k2), Map.of("head.weight", kh),
                7 * 64 + 7 + 4 * 7 + 4 + 3 * 4 + 3, rng);
    }

    @Test
    void cnnConvChannelsAndHiddenUnitsShrink() throws Exception {
        Random rng = new Random(8);
        // width 4 -> conv1 4 filters, conv2 8 filters; kernel 3; hidden 6; 8x8 input -> 2x2 after two pools.
        Map<String, String> params = Map.of("width", "4", "kernel", "3", "hidden", "6");
        long[] c1 = keep(rng, 4, 3);
        long[] c2 = keep(rng, 8, 5);
        long[] f1 = keep(rng, 6, 2);
        // conv1 3x1x3x3, bn1 4x3, conv2 5x3x3x3, bn2 4x5, fc1 2x(5*4)+2, fc 3x2+3
        long expected = 3 * 9 + 4 * 3 + 5 * 3 * 9 + 4 * 5 + 2 * 20 + 2 + 3 * 2 + 3;
        check("cnn", params, Map.of("conv1", c1, "conv2", c2, "fc1", f1), Map.of("fc.weight", keep(rng, 3, 2)),
                expected, rng);
        // Without batch norm the convs have a bias, which goes with its unit.
        Map<String, String> plain = Map.of("width", "4", "kernel", "3", "hidden", "0", "batch-norm", "false");
        check("cnn", plain, Map.of("conv1", c1, "conv2", c2), Map.of(),
                3 * 9 + 3 + 5 * 3 * 9 + 5 + 3 * 20 + 3, rng);
    }

    @Test
    void resnetShrinksOnlyTheBlocksFirstConvs() throws Exception {
        Random rng = new Random(13);
        Map<String, String> params = Map.of("width", "4", "blocks", "1");
        assertEquals(List.of("stage1.block1.conv1", "stage2.block1.conv1", "stage3.block1.conv1"),
                ModelZoo.shrinkable("resnet", params, SAMPLE, CLASSES).stream().map(ModelZoo.Shrinkable::layer)
                        .toList());
        long[] a = keep(rng, 4, 2);
        long[] b = keep(rng, 8, 5);
        long[] c = keep(rng, 16, 9);
        // Residual-path convs are structured too; they load full size with zero rows.
        Map<String, long[]> other = Map.of("stem.weight", keep(rng, 4, 3), "stage2.block1.conv2.weight",
                keep(rng, 8, 4), "stage3.block1.shortcut.weight", keep(rng, 16, 8));
        try (NDManager m = NDManager.newBaseManager()) {
            long full = ModelZoo.build("resnet", params, SAMPLE, CLASSES).initialize(m, 0).parameterCount();
            // Each conv1 loses (removed) * (in * 9) weights, bn2 loses 4 per removed channel, conv2 loses
            // out * 9 per removed input channel.
            long saved = 2 * (4 * 9) + 2 * 4 + 4 * 2 * 9
                    + 3 * (4 * 9) + 3 * 4 + 8 * 3 * 9
                    + 7 * (8 * 9) + 7 * 4 + 16 * 7 * 9;
            check("resnet", params, Map.of("stage1.block1.conv1", a, "stage2.block1.conv1", b,
                    "stage3.block1.conv1", c), other, full - saved, rng);
        }
    }

    @Test
    void residualPathAndHeadCannotBeNarrowed() {
        KilnException stem = assertThrows(KilnException.class, () -> ModelZoo.build("resnet", Map.of(), SAMPLE,
                CLASSES, Map.of(), Map.of("stem", 8)));
        assertTrue(stem.getMessage().contains("stem") && stem.getMessage().contains("residual"), stem.getMessage());
        KilnException head = assertThrows(KilnException.class, () -> ModelZoo.build("mlp", Map.of(), SAMPLE,
                CLASSES, Map.of(), Map.of("head", 2)));
        assertTrue(head.getMessage().contains("head") && head.getMessage().contains("fc1, fc2"), head.getMessage());
        KilnException wider = assertThrows(KilnException.class, () -> ModelZoo.build("mlp", Map.of("hidden", "8"),
                SAMPLE, CLASSES, Map.of(), Map.of("fc1", 9)));
        assertTrue(wider.getMessage().contains("fc1") && wider.getMessage().contains("8"), wider.getMessage());
    }
}
