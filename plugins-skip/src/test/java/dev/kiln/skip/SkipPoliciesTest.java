package dev.kiln.skip;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

class SkipPoliciesTest {

    private static final Registry REGISTRY = Registry.discover(SkipPoliciesTest.class.getClassLoader());

    private static SkipPolicy policy(String id, Map<String, String> params) {
        return REGISTRY.create(Kind.SKIP, SkipPolicy.class, id, params);
    }

    private static List<Integer> kept(SkipPolicy policy, int layers, Phase phase, int position) {
        SkipSession session = policy.begin(new ModelLayout(layers, 0), phase, position, new SplittableRandom(1));
        List<Integer> kept = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            if (session.runLayer(l)) {
                kept.add(l);
            }
        }
        return kept;
    }

    @Test
    void providerIsDiscoveredWithEveryPolicy() {
        TreeSet<String> ids = new TreeSet<>();
        for (Technique<?> t : REGISTRY.all(Kind.SKIP)) {
            ids.add(t.id());
        }
        assertTrue(ids.containsAll(List.of("unified", "contiguous", "skipdecode", "ffn-skip", "layerdrop")), ids::toString);
        assertEquals(KvCacheRule.FIXED_LAYER_SET, policy("unified", Map.of()).kvCacheRule());
        assertEquals(KvCacheRule.FIXED_LAYER_SET, policy("contiguous", Map.of()).kvCacheRule());
        assertEquals(KvCacheRule.MONOTONE_EXIT, policy("skipdecode", Map.of()).kvCacheRule());
        assertEquals(KvCacheRule.ATTENTION_ALWAYS_RUNS, policy("ffn-skip", Map.of()).kvCacheRule());
        assertEquals(KvCacheRule.TRAINING_ONLY, policy("layerdrop", Map.of()).kvCacheRule());
    }

    @Test
    void unifiedKeepsHandComputedSets() {
        // n = round(L / s), kept i -> round(i * (L - 1) / (n - 1)); values worked out by hand
        assertEquals(List.of(0, 3), unified(4, "2"));
        assertEquals(List.of(0, 2, 4, 7, 9, 11), unified(12, "2"));
        assertEquals(List.of(0, 4, 7), unified(8, "3"));
        assertEquals(List.of(0, 5, 9), unified(10, "4"));
        assertEquals(List.of(0, 6, 12, 17, 23), unified(24, "5"));
        assertEquals(List.of(0, 1, 2, 3, 4, 5), unified(6, "1"));
        assertEquals(List.of(0, 2), unified(3, "100"));
        assertEquals(List.of(0), unified(1, "2"));
        // 7 / 1.1 = 6.36 -> 6 layers: i * 6 / 5 = 0, 1.2, 2.4, 3.6, 4.8, 6
        assertEquals(List.of(0, 1, 2, 4, 5, 6), unified(7, "1.1"));
    }

    private static List<Integer> unified(int layers, String speedup) {
        return kept(policy("unified", Map.of("speedup", speedup, "prefill", "same")), layers, Phase.DECODE, 9);
    }

    @Test
    void fixedSetPoliciesReturnTheSameSetAtEveryPosition() {
        SkipPolicy full = policy("unified", Map.of("speedup", "2"));
        SkipPolicy same = policy("unified", Map.of("speedup", "2", "prefill", "same"));
        SkipPolicy block = policy("contiguous", Map.of("drop", "2", "where", "middle"));
        assertEquals(List.of(0, 1, 2, 3, 4, 5, 6, 7, 8, 9), kept(full, 10, Phase.PREFILL, 0));
        assertEquals(List.of(0, 2, 5, 7, 9), kept(same, 10, Phase.PREFILL, 0));
        for (SkipPolicy p : List.of(full, same, block)) {
            List<Integer> first = kept(p, 10, Phase.DECODE, 3);
            for (int pos = 4; pos < 40; pos += 3) {
                assertEquals(first, kept(p, 10, Phase.DECODE, pos));
            }
        }
    }

    @Test
    void contiguousDropsTheNamedBlock() {
        assertEquals(List.of(0, 1, 2, 3, 4, 5), kept(policy("contiguous", Map.of("drop", "0.25")), 8,
                Phase.DECODE, 0));
        assertEquals(List.of(2, 3, 4, 5, 6, 7), kept(policy("contiguous", Map.of("drop", "0.25", "where",
                "bottom")), 8, Phase.PREFILL, 0));
        assertEquals(List.of(0, 1, 5, 6, 7), kept(policy("contiguous", Map.of("drop", "3", "where", "middle")), 8,
                Phase.DECODE, 5));
        assertEquals(List.of(0, 1, 2), kept(policy("contiguous", Map.of("drop", "0")), 3, Phase.DECODE, 0));
        KilnException all = assertThrows(KilnException.class,
                () -> kept(policy("contiguous", Map.of("drop", "8")), 8, Phase.DECODE, 0));
        assertTrue(all.getMessage().contains("drop 8.0") && all.getMessage().contains("8 layers"), all.getMessage());
        KilnException frac = assertThrows(KilnException.class, () -> policy("contiguous", Map.of("drop", "1.5")));
        assertTrue(frac.getMessage().contains("1.5"), frac.getMessage());
    }

    @Test
    void skipDecodeDepthFallsLinearlyAndSkipsLowerLayers() {
        SkipPolicy p = policy("skipdecode", Map.of("min-depth", "2", "max-position", "6"));
        int[] expected = {8, 7, 6, 5, 4, 3, 2, 2, 2};
        for (int pos = 0; pos < expected.length; pos++) {
            List<Integer> top = new ArrayList<>();
            for (int l = 8 - expected[pos]; l < 8; l++) {
                top.add(l);
            }
            assertEquals(top, kept(p, 8, Phase.DECODE, pos), "position " + pos);
        }
        // depth = 5 - floor(3 p / 4)
        SkipPolicy q = policy("skipdecode", Map.of("max-depth", "5", "min-depth", "2", "max-position", "4"));
        int[] depths = {5, 5, 4, 3, 2, 2};
        for (int pos = 0; pos < depths.length; pos++) {
            assertEquals(depths[pos], kept(q, 6, Phase.DECODE, pos).size(), "position " + pos);
        }
        assertEquals(6, kept(q, 6, Phase.PREFILL, 0).size());
        // monotone: every later position's layers are a subset of every earlier one's, so the cache is complete
        for (int a = 0; a < 20; a++) {
            for (int b = a; b < 20; b++) {
                assertTrue(kept(q, 6, Phase.DECODE, a).containsAll(kept(q, 6, Phase.DECODE, b)));
            }
        }
        KilnException deep = assertThrows(KilnException.class, () -> kept(q, 4, Phase.DECODE, 0));
        assertTrue(deep.getMessage().contains("max-depth 5"), deep.getMessage());
    }

    @Test
    void ffnSkipFollowsTheDocumentedRule() {
        try (NDManager manager = NDManager.newBaseManager()) {
            SkipPolicy p = policy("ffn-skip", Map.of("threshold", "0.9", "warmup-tokens", "2"));
            ModelLayout layout = new ModelLayout(6, 0);
            NDArray x = manager.randomNormal(new Shape(2, 1, 8));
            NDArray parallel = x.mul(3);
            NDArray orthoish = manager.randomNormal(new Shape(2, 1, 8));
            SkipSession prefill = p.begin(layout, Phase.PREFILL, 0, null);
            for (int l = 0; l < 6; l++) {
                assertTrue(prefill.runLayer(l) && prefill.runAttention(l) && prefill.runFfn(l));
                prefill.observeFfn(l, x, parallel);
            }
            for (int warm = 0; warm < 2; warm++) {
                SkipSession s = p.begin(layout, Phase.DECODE, 5 + warm, null);
                for (int l = 0; l < 6; l++) {
                    assertTrue(s.runFfn(l), "warm-up pass " + warm + " layer " + l);
                    s.observeFfn(l, x, parallel);
                }
            }
            SkipSession s = p.begin(layout, Phase.DECODE, 7, null);
            assertTrue(s.runFfn(0));
            s.observeFfn(0, x, orthoish);
            assertTrue(s.runFfn(1));
            s.observeFfn(1, x, parallel);
            for (int l = 2; l < 5; l++) {
                assertTrue(s.runLayer(l) && s.runAttention(l));
                assertFalse(s.runFfn(l), "layer " + l);
            }
            assertTrue(s.runFfn(5));
            // saturation at the protected first layer still counts for layer 1
            SkipSession t = p.begin(layout, Phase.DECODE, 8, null);
            assertTrue(t.runFfn(0));
            t.observeFfn(0, x, parallel);
            assertFalse(t.runFfn(1));
            // a new prefill restarts the warm-up
            p.begin(layout, Phase.PREFILL, 0, null);
            SkipSession u = p.begin(layout, Phase.DECODE, 4, null);
            u.observeFfn(0, x, parallel);
            assertTrue(u.runFfn(1));
        }
    }

    @Test
    void meanCosineMatchesFloat64Reference() {
        try (NDManager manager = NDManager.newBaseManager()) {
            Random random = new Random(5);
            int b = 2;
            int t = 3;
            int d = 5;
            float[] in = new float[b * t * d];
            float[] out = new float[b * t * d];
            for (int i = 0; i < in.length; i++) {
                in[i] = (float) random.nextGaussian();
                out[i] = (float) (in[i] * 0.5 + random.nextGaussian());
            }
            double sum = 0;
            for (int r = 0; r < b * t; r++) {
                double dot = 0;
                double na = 0;
                double nb = 0;
                for (int k = 0; k < d; k++) {
                    dot += (double) in[r * d + k] * out[r * d + k];
                    na += (double) in[r * d + k] * in[r * d + k];
                    nb += (double) out[r * d + k] * out[r * d + k];
                }
                sum += dot / Math.sqrt(na * nb);
            }
            NDArray a = manager.create(in, new Shape(b, t, d));
            NDArray o = manager.create(out, new Shape(b, t, d));
            assertEquals(sum / (b * t), FfnSkip.meanCosine(a, o), 1e-5);
            KilnException bad = assertThrows(KilnException.class,
                    () -> FfnSkip.meanCosine(a, manager.zeros(new Shape(b, t, d + 1))));
            assertTrue(bad.getMessage().contains("(2, 3, 6)"), bad.getMessage());
        }
    }

    @Test
    void layerDropRatesMatchTheLinearSchedule() {
        SkipPolicy p = policy("layerdrop", Map.of("rate", "0.4"));
        int layers = 5;
        int passes = 20000;
        int[] dropped = new int[layers];
        SplittableRandom random = new SplittableRandom(42);
        ModelLayout layout = new ModelLayout(layers, 0);
        for (int i = 0; i < passes; i++) {
            SkipSession s = p.begin(layout, Phase.TRAIN, 0, random);
            for (int l = 0; l < layers; l++) {
                if (!s.runLayer(l)) {
                    dropped[l]++;
                }
            }
        }
        assertEquals(0, dropped[0]);
        for (int l = 1; l < layers; l++) {
            double expected = 0.4 * l / (layers - 1);
            double sigma = Math.sqrt(expected * (1 - expected) / passes);
            assertEquals(expected, dropped[l] / (double) passes, 4 * sigma, "layer " + l);
        }
        for (Phase phase : List.of(Phase.PREFILL, Phase.DECODE, Phase.FORWARD)) {
            assertEquals(List.of(0, 1, 2, 3, 4), kept(p, layers, phase, 3));
        }
        List<Integer> one = kept(p, 12, Phase.TRAIN, 0);
        assertEquals(one, kept(p, 12, Phase.TRAIN, 0), "same seed, same decisions");
        assertThrows(KilnException.class, () -> policy("layerdrop", Map.of("rate", "1.5")));
    }

    private static double[] exitWeights(SkipPolicy p, int layers, int step) {
        SkipSession s = p.begin(new ModelLayout(layers, 0), Phase.TRAIN, step, new SplittableRandom(3));
        double[] w = new double[layers];
        for (int l = 0; l < layers; l++) {
            w[l] = s.exitLossWeight(l);
        }
        return w;
    }

    @Test
    void layerDropEarlyExitWeightsFollowTorchtunesScalesAndCurricula() {
        // off by default, and in every phase but training
        assertArrayEquals(new double[4], exitWeights(policy("layerdrop", Map.of()), 4, 100));
        SkipPolicy all = policy("layerdrop", Map.of("early-exit-scale", "0.5", "early-exit-curriculum", "none"));
        // linear: (1, 2, 3, 4), exits before the last times 0.5 -> (0.5, 1, 1.5, 4) / 7
        assertArrayEquals(new double[] {1 / 14.0, 2 / 14.0, 3 / 14.0, 8 / 14.0}, exitWeights(all, 4, 0), 1e-12);
        SkipSession prefill = all.begin(new ModelLayout(4, 0), Phase.PREFILL, 0, null);
        assertEquals(0, prefill.exitLossWeight(0));
        // the other scale functions at e_scale 1: base weights normalised
        Map<String, double[]> base = Map.of(
                "uniform", new double[] {1, 1, 1},
                "sum", new double[] {1, 3, 6},
                "sqrt", new double[] {1, Math.sqrt(2), Math.sqrt(3)},
                "inv", new double[] {1, 1 / 2.0, 1 / 3.0},
                "inv-sqrt", new double[] {1, 1 / Math.sqrt(2), 1 / Math.sqrt(3)});
        for (Map.Entry<String, double[]> e : base.entrySet()) {
            double[] b = e.getValue();
            double sum = b[0] + b[1] + b[2];
            SkipPolicy p = policy("layerdrop", Map.of("early-exit-scale", "1", "early-exit-curriculum", "none",
                    "early-exit-scale-fn", e.getKey()));
            assertArrayEquals(new double[] {b[0] / sum, b[1] / sum, b[2] / sum}, exitWeights(p, 3, 7), 1e-12,
                    e.getKey());
        }
        // rotational: one exit per step cycling through layers 0..L-2, the last always on; uniform weights
        SkipPolicy rot = policy("layerdrop", Map.of("early-exit-scale", "1", "early-exit-curriculum", "rotational",
                "early-exit-scale-fn", "uniform"));
        assertArrayEquals(new double[] {0, 0.5, 0, 0.5}, exitWeights(rot, 4, 4), 1e-12);
        assertArrayEquals(new double[] {0.5, 0, 0, 0.5}, exitWeights(rot, 4, 6), 1e-12);
        // gradual over 8 steps with 4 layers: layer i on from step 8 (4 - i) / 4 = 2 (4 - i): 3 always, 2 from 4,
        // 1 from 6, 0 from 8
        SkipPolicy grad = policy("layerdrop", Map.of("early-exit-scale", "1", "early-exit-ramp", "8",
                "early-exit-scale-fn", "uniform"));
        assertArrayEquals(new double[] {0, 0, 0, 1}, exitWeights(grad, 4, 1), 1e-12);
        assertArrayEquals(new double[] {0, 0, 0, 1}, exitWeights(grad, 4, 3), 1e-12);
        assertArrayEquals(new double[] {0, 0, 0.5, 0.5}, exitWeights(grad, 4, 4), 1e-12);
        assertArrayEquals(new double[] {0, 1 / 3.0, 1 / 3.0, 1 / 3.0}, exitWeights(grad, 4, 7), 1e-12);
        assertArrayEquals(new double[] {0.25, 0.25, 0.25, 0.25}, exitWeights(grad, 4, 8), 1e-12);
        // early exits do not change the dropout draws
        assertEquals(kept(policy("layerdrop", Map.of("rate", "0.5")), 12, Phase.TRAIN, 0),
                kept(policy("layerdrop", Map.of("rate", "0.5", "early-exit-scale", "1")), 12, Phase.TRAIN, 0));
        assertThrows(KilnException.class, () -> policy("layerdrop", Map.of("early-exit-scale-fn", "cubic")));
        assertThrows(KilnException.class, () -> policy("layerdrop", Map.of("early-exit-scale", "-1")));
    }

    @Test
    void badLayoutsAndLayersAreNamed() {
        SkipPolicy p = policy("unified", Map.of());
        KilnException none = assertThrows(KilnException.class, () -> p.begin(new ModelLayout(0, 0), Phase.DECODE, 0,
                null));
        assertTrue(none.getMessage().contains("0 layers"), none.getMessage());
        SkipSession s = p.begin(new ModelLayout(4, 0), Phase.DECODE, 0, null);
        KilnException out = assertThrows(KilnException.class, () -> s.runLayer(4));
        assertTrue(out.getMessage().contains("layer 4"), out.getMessage());
        assertArrayEquals(new boolean[] {true, false, false, true}, UnifiedSkip.keep(4, 2));
    }
}
