package dev.kiln.core.lm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Low-rank linear layers of the decoder LM, loaded from a compressed checkpoint, run as two thin matmuls and give the
 * logits of the float64 reference on the reconstructed dense weights.
 */
class FactoredDecoderTest {
    @TempDir
    Path dir;

    private static final int[] PROMPT = {3, 1, 4, 1, 5, 9, 2};
    private static final boolean[] ALL = {true, true};

    private static float[] random(Random rng, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (0.3 * rng.nextGaussian());
        }
        return out;
    }

    private static Map<String, Object> lowRank(String name, long out, long in) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("shape", List.of(out, in));
        e.put("dtype", "F32");
        e.put("stored", Map.of(".u", name + ".u", ".v", name + ".v"));
        e.put("metadata", Map.of("format", "low-rank"));
        return e;
    }

    private static void assertLogits(double[] want, float[] got) {
        for (int v = 0; v < DecoderLm.VOCAB; v++) {
            assertEquals(want[v], got[v], 2e-4 * Math.max(1, Math.abs(want[v])), "vocab " + v);
        }
    }

    @Test
    void cheapLowRankLinearsRunFactoredWithTheDenseLogits() throws Exception {
        Random rng = new Random(21);
        // dim 32, ffn 64: qkv [96, 32] at rank 2 is cheaper factored (2 * 128 < 3072); ffn.down [32, 64] at rank 30
        // is not (30 * 96 > 2048); the embedding is never factored.
        DecoderConfig config = new DecoderConfig(2, 32, 2, 2, 16, true);
        Path plain = dir.resolve("lm.safetensors");
        Path compressed = dir.resolve("lm-low-rank.safetensors");
        float[] u = random(rng, 96 * 2);
        float[] v = random(rng, 2 * 32);
        try (NDManager m = NDManager.newBaseManager(); DecoderLm base = new DecoderLm(config, m, 9)) {
            LmCheckpoint.save(base, plain, Map.of());
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            Map<String, Object> tensors = new LinkedHashMap<>();
            for (Map.Entry<String, NDArray> e : base.weights().entrySet()) {
                String name = e.getKey();
                Shape s = e.getValue().getShape();
                if (name.equals("layers.0.attn.qkv.weight")) {
                    arrays.put(name + ".u", m.create(u, new Shape(96, 2)));
                    arrays.put(name + ".v", m.create(v, new Shape(2, 32)));
                    tensors.put(name, lowRank(name, 96, 32));
                } else if (name.equals("layers.1.ffn.down.weight") || name.equals("embed.weight")) {
                    long r = name.startsWith("embed") ? 4 : 30;
                    arrays.put(name + ".u", m.create(random(rng, (int) (s.get(0) * r)), new Shape(s.get(0), r)));
                    arrays.put(name + ".v", m.create(random(rng, (int) (r * s.get(1))), new Shape(r, s.get(1))));
                    tensors.put(name, lowRank(name, s.get(0), s.get(1)));
                } else {
                    arrays.put(name, e.getValue());
                }
            }
            Map<String, Object> record = new LinkedHashMap<>();
            record.put("compressor", "low-rank");
            record.put("params", Map.of());
            record.put("names", List.copyOf(base.weights().keySet()));
            record.put("tensors", tensors);
            Map<String, String> meta;
            try (SafetensorsReader reader = SafetensorsReader.open(plain)) {
                meta = new LinkedHashMap<>(reader.metadata());
            }
            meta.put(CompressPipeline.METADATA_KEY, Json.MAPPER.writeValueAsString(record));
            SafetensorsWriter.save(compressed, meta, arrays);
        }

        try (NDManager m = NDManager.newBaseManager(); DecoderLm model = LmCheckpoint.load(compressed, m)) {
            assertEquals(Map.of("layers.0.attn.qkv.weight", 2), model.factoredRanks());
            // The dense weight is the reconstruction U V, which the float64 reference reads.
            float[] qkv = model.weights().get("layers.0.attn.qkv.weight").toFloatArray();
            for (int o = 0; o < 96; o += 17) {
                for (int i = 0; i < 32; i += 5) {
                    double want = (double) u[o * 2] * v[i] + (double) u[o * 2 + 1] * v[32 + i];
                    assertEquals(want, qkv[o * 32 + i], 1e-5);
                }
            }
            double[] reference = Reference.lastLogits(model, PROMPT, ALL);
            for (boolean cache : new boolean[] {true, false}) {
                Generation g = model.generate(new int[][] {PROMPT}, 3, Decoding.greedy(0), null, cache);
                assertLogits(reference, g.logits()[0][0]);
            }

            // The factors, not the dense copy, are what runs: factoring with 2U changes the logits to those of a
            // dense model whose weight is 2 U V.
            float[] twice = new float[u.length];
            for (int i = 0; i < u.length; i++) {
                twice[i] = 2 * u[i];
            }
            model.factor("layers.0.attn.qkv.weight", m.create(twice, new Shape(96, 2)), m.create(v, new Shape(2,
                    32)));
            float[] factoredLogits = model.generate(new int[][] {PROMPT}, 1, Decoding.greedy(0), null, true)
                    .logits()[0][0];
            try (DecoderLm dense = LmCheckpoint.load(compressed, m)) {
                dense.refreshDerived();
                float[] w = qkv.clone();
                for (int k = 0; k < w.length; k++) {
                    w[k] *= 2;
                }
                dense.weights().get("layers.0.attn.qkv.weight").set(w);
                dense.refreshDerived();
                assertTrue(dense.factoredRanks().isEmpty());
                double[] doubled = Reference.lastLogits(dense, PROMPT, ALL);
                assertLogits(doubled, factoredLogits);
                double diff = 0;
                for (int k = 0; k < DecoderLm.VOCAB; k++) {
                    diff = Math.max(diff, Math.abs(doubled[k] - reference[k]));
                }
                assertTrue(diff > 1e-2, "doubling U must change the logits, max change " + diff);
            }

            KilnException embed = assertThrows(KilnException.class, () -> model.factor("embed.weight",
                    m.zeros(new Shape(256, 1)), m.zeros(new Shape(1, 32))));
            assertTrue(embed.getMessage().contains("embed.weight"), embed.getMessage());
            KilnException shape = assertThrows(KilnException.class, () -> model.factor("layers.1.ffn.up.weight",
                    m.zeros(new Shape(64, 2)), m.zeros(new Shape(3, 32))));
            assertTrue(shape.getMessage().contains("[out, r]"), shape.getMessage());
            model.refreshDerived();
            assertTrue(model.factoredRanks().isEmpty(), "refreshing the weights drops the factors");
        }
    }
}
