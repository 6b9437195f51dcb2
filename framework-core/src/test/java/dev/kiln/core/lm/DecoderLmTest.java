package dev.kiln.core.lm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.random.RandomGenerator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class DecoderLmTest {
    private static final int LAYERS = 4;
    private static NDManager manager;
    private static DecoderLm model;

    @BeforeAll
    static void setUp() {
        manager = NDManager.newBaseManager();
        model = new DecoderLm(new DecoderConfig(LAYERS, 32, 2, 2, 24, false), manager, 11);
    }

    @AfterAll
    static void tearDown() {
        model.close();
        manager.close();
    }

    // ---- test policies, written here because core must not depend on plugins-skip ----

    /** Keeps a fixed set in decode; prefill runs everything (fullPrefill) or the same set. */
    record FixedSet(boolean[] keep, boolean fullPrefill) implements SkipPolicy {
        public KvCacheRule kvCacheRule() {
            return KvCacheRule.FIXED_LAYER_SET;
        }

        public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
            boolean all = phase == Phase.PREFILL && fullPrefill;
            return layer -> all || keep[layer];
        }
    }

    /** SkipDecode-like: depth falls by one layer every two positions after the prompt, down to 1; lower layers skip. */
    record Monotone(int promptLength) implements SkipPolicy {
        public KvCacheRule kvCacheRule() {
            return KvCacheRule.MONOTONE_EXIT;
        }

        public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
            int depth = phase == Phase.PREFILL ? layout.layers()
                    : Math.max(1, layout.layers() - (position - promptLength + 2) / 2);
            return layer -> layer >= layout.layers() - depth;
        }
    }

    /** FFN-skip-like: after one decode pass, an FFN is skipped when the previous observed FFN kept cos > 0.5. */
    static final class FfnSaturation implements SkipPolicy {
        int decodes;

        public KvCacheRule kvCacheRule() {
            return KvCacheRule.ATTENTION_ALWAYS_RUNS;
        }

        public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
            boolean active = phase == Phase.DECODE && decodes++ >= 1;
            if (phase == Phase.PREFILL) {
                decodes = 0;
            }
            return new SkipSession() {
                double last = -1;

                public boolean runLayer(int layer) {
                    return true;
                }

                public boolean runFfn(int layer) {
                    return !active || layer == 0 || layer == layout.layers() - 1 || last <= 0.5;
                }

                public void observeFfn(int layer, NDArray input, NDArray output) {
                    double[] in = toDouble(input.toFloatArray());
                    double[] out = toDouble(output.toFloatArray());
                    int d = (int) input.getShape().get(2);
                    double sum = 0;
                    for (int r = 0; r < in.length / d; r++) {
                        double dot = 0;
                        double na = 0;
                        double nb = 0;
                        for (int k = r * d; k < r * d + d; k++) {
                            dot += in[k] * out[k];
                            na += in[k] * in[k];
                            nb += out[k] * out[k];
                        }
                        sum += dot / Math.sqrt(na * nb);
                    }
                    last = sum / (in.length / d);
                }
            };
        }
    }

    /** Declares a fixed set but runs layer 2 only at even positions: breaks the cache rule. */
    record Liar() implements SkipPolicy {
        public KvCacheRule kvCacheRule() {
            return KvCacheRule.FIXED_LAYER_SET;
        }

        public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
            return layer -> layer != 2 || phase == Phase.PREFILL || position % 2 == 0;
        }
    }

    private static final int[][] PROMPTS = {{72, 101, 108, 108, 111}, {3, 250, 17, 99, 0}, {65, 65, 66, 66, 67}};

    private static Map<String, SkipPolicy> policies() {
        Map<String, SkipPolicy> p = new LinkedHashMap<>();
        p.put("none", null);
        p.put("fixed-full-prefill", new FixedSet(new boolean[] {true, false, false, true}, true));
        p.put("fixed-same-prefill", new FixedSet(new boolean[] {true, false, true, true}, false));
        p.put("monotone", new Monotone(5));
        p.put("ffn", new FfnSaturation());
        return p;
    }

    @Test
    void keepEveryLayerEqualsNoPolicy() {
        Generation plain = model.generate(PROMPTS, 6, Decoding.greedy(1), null, true);
        Generation all = model.generate(PROMPTS, 6, Decoding.greedy(1),
                new FixedSet(new boolean[] {true, true, true, true}, false), true);
        assertArrayEquals(plain.tokens(), all.tokens());
        for (int s = 0; s < 6; s++) {
            for (int b = 0; b < PROMPTS.length; b++) {
                assertArrayEquals(plain.logits()[s][b], all.logits()[s][b], 0f);
            }
        }
        Generation skipped = model.generate(PROMPTS, 6, Decoding.greedy(1),
                new FixedSet(new boolean[] {true, false, false, true}, true), true);
        assertTrue(maxDiff(plain.logits()[1], skipped.logits()[1]) > 1e-2, "skipping layers changes the logits");
        assertArrayEquals(plain.logits()[0][0], skipped.logits()[0][0], 0f, "full prefill is unchanged");
    }

    @Test
    void cachedDecodingMatchesRecomputationUnderEveryPolicy() {
        for (Map.Entry<String, SkipPolicy> e : policies().entrySet()) {
            for (Decoding decoding : new Decoding[] {Decoding.greedy(3), Decoding.sampled(1.5, 9)}) {
                Generation cached = model.generate(PROMPTS, 8, decoding, e.getValue(), true);
                Generation full = model.generate(PROMPTS, 8, decoding, e.getValue(), false);
                String what = e.getKey() + " greedy=" + decoding.greedy();
                assertArrayEquals(cached.tokens(), full.tokens(), what);
                for (int s = 0; s < 8; s++) {
                    assertTrue(maxDiff(cached.logits()[s], full.logits()[s]) < 1e-4, what + " step " + s);
                }
                for (int p = 0; p < cached.layerRan().length; p++) {
                    assertArrayEquals(cached.layerRan()[p], full.layerRan()[p], what + " position " + p);
                    assertArrayEquals(cached.ffnRan()[p], full.ffnRan()[p], what + " position " + p);
                    assertArrayEquals(cached.layerRan()[p], cached.attentionRan()[p], what);
                }
            }
        }
    }

    @Test
    void policiesActuallySkipWhatTheyDeclare() {
        Generation mono = model.generate(PROMPTS, 8, Decoding.greedy(3), new Monotone(5), true);
        int previous = LAYERS;
        for (int p = 5; p < mono.layerRan().length; p++) {
            int depth = 0;
            for (int l = 0; l < LAYERS; l++) {
                depth += mono.layerRan()[p][l] ? 1 : 0;
                assertEquals(l >= LAYERS - depth || mono.layerRan()[p][l], mono.layerRan()[p][l]);
            }
            assertTrue(depth <= previous, "depth never increases");
            previous = depth;
        }
        assertEquals(1, previous);
        Generation ffn = model.generate(PROMPTS, 8, Decoding.greedy(3), new FfnSaturation(), true);
        int skippedFfn = 0;
        for (boolean[] row : ffn.ffnRan()) {
            for (int l = 0; l < LAYERS; l++) {
                skippedFfn += row[l] ? 0 : 1;
            }
        }
        assertTrue(skippedFfn > 0, "the FFN test policy skipped nothing; the test would prove nothing");
        for (boolean[] row : ffn.attentionRan()) {
            assertArrayEquals(new boolean[] {true, true, true, true}, row);
        }
    }

    @Test
    void batchedGenerationEqualsOneByOne() {
        for (SkipPolicy policy : new SkipPolicy[] {null, new FixedSet(new boolean[] {true, false, true, true}, true),
                new Monotone(5)}) {
            Generation batched = model.generate(PROMPTS, 6, Decoding.greedy(4), policy, true);
            for (int b = 0; b < PROMPTS.length; b++) {
                Generation one = model.generate(new int[][] {PROMPTS[b]}, 6, Decoding.greedy(4), policy, true);
                assertArrayEquals(one.tokens()[0], batched.tokens()[b]);
                for (int s = 0; s < 6; s++) {
                    assertArrayEquals(one.logits()[s][0], batched.logits()[s][b], 1e-4f);
                }
            }
        }
    }

    @Test
    void prefillLogitsMatchFloat64Reference() {
        boolean[] all = {true, true, true, true};
        boolean[] some = {true, false, true, true};
        for (boolean[] keep : new boolean[][] {all, some}) {
            Generation g = model.generate(PROMPTS, 1, Decoding.greedy(0), new FixedSet(keep, false), false);
            for (int b = 0; b < PROMPTS.length; b++) {
                double[] ref = Reference.lastLogits(model, PROMPTS[b], keep);
                for (int v = 0; v < DecoderLm.VOCAB; v++) {
                    assertEquals(ref[v], g.logits()[0][b][v], 2e-4 * Math.max(1, Math.abs(ref[v])), "vocab " + v);
                }
            }
        }
    }

    @Test
    void tiedHeadUsesTheEmbedding() {
        try (DecoderLm tied = new DecoderLm(new DecoderConfig(2, 16, 4, 4, 8, true), manager, 5)) {
            assertTrue(!tied.weights().containsKey("head.weight"));
            Generation g = tied.generate(new int[][] {{1, 2, 3}}, 2, Decoding.greedy(0), null, true);
            double[] ref = Reference.lastLogits(tied, new int[] {1, 2, 3}, new boolean[] {true, true});
            for (int v = 0; v < DecoderLm.VOCAB; v++) {
                assertEquals(ref[v], g.logits()[0][0][v], 2e-4 * Math.max(1, Math.abs(ref[v])));
            }
        }
    }

    @Test
    void brokenCacheRuleIsReportedInBothPaths() {
        for (boolean cache : new boolean[] {true, false}) {
            KilnException e = assertThrows(KilnException.class,
                    () -> model.generate(PROMPTS, 5, Decoding.greedy(0), new Liar(), cache));
            assertTrue(e.getMessage().contains("FIXED_LAYER_SET") && e.getMessage().contains("layer 2"),
                    e.getMessage());
        }
    }

    @Test
    void badInputIsNamed() {
        assertMessage("prompt 1 has length 2", () -> model.generate(new int[][] {{1, 2, 3}, {1, 2}}, 2,
                Decoding.greedy(0), null, true));
        assertMessage("token 300", () -> model.generate(new int[][] {{1, 300}}, 2, Decoding.greedy(0), null, true));
        assertMessage("maxLength is 24", () -> model.generate(new int[][] {{1, 2}}, 30, Decoding.greedy(0), null,
                true));
        assertMessage("maxNewTokens", () -> model.generate(new int[][] {{1}}, 0, Decoding.greedy(0), null, true));
        assertMessage("dim 30 is not divisible by heads 4", () -> new DecoderConfig(2, 30, 4, 2, 8, false));
        assertMessage("temperature", () -> Decoding.sampled(0, 1));
    }

    private static void assertMessage(String expected, org.junit.jupiter.api.function.Executable call) {
        KilnException e = assertThrows(KilnException.class, call);
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    private static double maxDiff(float[][] a, float[][] b) {
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[i].length; j++) {
                max = Math.max(max, Math.abs(a[i][j] - b[i][j]));
            }
        }
        return max;
    }

    static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }
}
