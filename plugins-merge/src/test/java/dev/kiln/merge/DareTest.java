package dev.kiln.merge;

import static dev.kiln.merge.Fixture.assertClose;
import static dev.kiln.merge.Fixture.filled;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * DARE: the drop/rescale/consensus arithmetic against the reference with known masks, and the seeded on-device
 * masks for reproducibility, keep rate, independence between models and the inverse rescale.
 */
class DareTest {
    static final Shape SHAPE = new Shape(6, 7);
    static NDManager manager;

    @BeforeAll
    static void start() {
        manager = NDManager.newBaseManager();
    }

    @AfterAll
    static void stop() {
        manager.close();
    }

    /** Masks drawn in Java; handed out in model order, as the method asks for them. */
    static boolean[][] masks(long seed, int n, int numel, double[] density) {
        Random rng = new Random(seed);
        boolean[][] keep = new boolean[n][numel];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < numel; j++) {
                keep[i][j] = rng.nextDouble() < density[i];
            }
        }
        return keep;
    }

    static TaskVectorMerge.KeepMasks given(boolean[][] keep) {
        int[] next = {0};
        return (m, shape, density, random) -> m.create(keep[next[0]++]).reshape(shape);
    }

    @Test
    void inverseAndNoRescaleAreElementwiseSoBlocksWithTheSameMasksGiveTheWholeResultBitForBit() {
        Fixture f = TaskVectorMethodsTest.scenarios().get(3);
        int n = f.models.length;
        for (String rescale : new String[] {"inverse", "none"}) {
            for (String consensus : new String[] {"none", "ties"}) {
                Map<String, String> p = Map.of("density", "0.6", "rescale", rescale, "consensus", consensus);
                boolean[][] keep = masks(11, n, 42, filled(n, 0.6));
                MergeMethod whole = Fixture.method(MergeTechniques.dare(given(keep)), p);
                assertTrue(whole.elementwise(), rescale);
                double[] want = f.run(manager, whole, SHAPE);
                // Rows [r0, r0 + 2) of the 6 x 7 tensor, each block with its slice of the same masks.
                double[] got = new double[42];
                for (int r0 = 0; r0 < 6; r0 += 2) {
                    int from = r0 * 7;
                    int to = from + 14;
                    boolean[][] slice = new boolean[n][];
                    for (int i = 0; i < n; i++) {
                        slice[i] = java.util.Arrays.copyOfRange(keep[i], from, to);
                    }
                    Fixture part = new Fixture(java.util.Arrays.copyOfRange(f.base, from, to), sliceRows(f.models,
                            from, to), f.weights);
                    double[] block = part.run(manager, Fixture.method(MergeTechniques.dare(given(slice)), p),
                            new Shape(2, 7));
                    System.arraycopy(block, 0, got, from, 14);
                }
                for (int j = 0; j < 42; j++) {
                    assertEquals(Double.doubleToRawLongBits(want[j]), Double.doubleToRawLongBits(got[j]),
                            rescale + "/" + consensus + " [" + j + "]");
                }
            }
        }
        assertFalse(Fixture.method(MergeTechniques.dare(), Map.of("rescale", "l1")).elementwise(),
                "the L1 rescale needs the whole task vector's norm");
    }

    private static double[][] sliceRows(double[][] models, int from, int to) {
        double[][] out = new double[models.length][];
        for (int i = 0; i < models.length; i++) {
            out[i] = java.util.Arrays.copyOfRange(models[i], from, to);
        }
        return out;
    }

    @Test
    void arithmeticMatchesReferenceWithKnownMasks() {
        String[][] settings = {
            {"0.5", "inverse", "none", "false"}, {"0.3", "l1", "none", "false"}, {"0.7", "none", "ties", "true"},
            {"0.5", "inverse", "ties", "false"}, {"0.1", "inverse", "none", "true"}, {"1.0", "inverse", "ties", "true"}};
        for (Fixture f : TaskVectorMethodsTest.scenarios()) {
            int n = f.models.length;
            for (String[] s : settings) {
                double[] density = filled(n, Double.parseDouble(s[0]));
                boolean[][] keep = masks(7, n, 42, density);
                double[] got = f.run(manager, Fixture.method(MergeTechniques.dare(given(keep)), Map.of(
                        "density", s[0], "rescale", s[1], "consensus", s[2], "normalize", s[3], "lambda", "0.8")),
                        SHAPE);
                double[] want = Reference.dare(f.base, f.models, f.weights, keep, density, s[1],
                        s[2].equals("ties"), Boolean.parseBoolean(s[3]), 0.8);
                assertClose(want, got, "dare " + String.join(",", s) + " n=" + n);
            }
        }
    }

    @Test
    void byHand() {
        // base 0, tau (1, -2, 3, -4), keep (T, F, T, F), density 0.5:
        //   inverse: (1, 0, 3, 0) / 0.5 = (2, 0, 6, 0)
        //   l1: |tau|_1 = 10, kept 4 -> (1, 0, 3, 0) * 2.5 = (2.5, 0, 7.5, 0)
        Fixture f = new Fixture(new double[4], new double[][] {{1, -2, 3, -4}}, filled(1, 1));
        boolean[][] keep = {{true, false, true, false}};
        double[] inverse = f.run(manager, Fixture.method(MergeTechniques.dare(given(keep)),
                Map.of("density", "0.5")), new Shape(4));
        assertClose(new double[] {2, 0, 6, 0}, inverse, "inverse");
        double[] l1 = f.run(manager, Fixture.method(MergeTechniques.dare(given(keep)),
                Map.of("density", "0.5", "rescale", "l1")), new Shape(4));
        assertClose(new double[] {2.5, 0, 7.5, 0}, l1, "l1");
    }

    private static float[] runSeeded(MergeMethod method, double[] base, double[][] models, long seed, Shape shape) {
        try (NDManager inputs = manager.newSubManager()) {
            List<ModelTensor> tensors = new ArrayList<>();
            for (double[] m : models) {
                tensors.add(ModelTensor.of(Fixture.array(inputs, m, shape)));
            }
            NDArray result = method.merge(new MergeInput("w", Fixture.array(inputs, base, shape), tensors,
                    new SplittableRandom(seed)));
            return result.toFloatArray();
        }
    }

    @Test
    void seededMasksAreReproducibleAndKeepTheDensity() {
        int numel = 20000;
        Shape shape = new Shape(100, 200);
        Fixture f = Fixture.random(11, 1, numel, 1.0 / 1024, 0, false);
        for (int j = 0; j < numel; j++) {
            if (f.models[0][j] == f.base[j]) {
                f.models[0][j] += 1.0 / 512;
            }
        }
        MergeMethod dare = Fixture.method(MergeTechniques.dare(), Map.of("density", "0.3"));
        float[] first = runSeeded(dare, f.base, f.models, 5, shape);
        assertArrayEquals(first, runSeeded(dare, f.base, f.models, 5, shape), "same seed, same merge");
        assertFalse(java.util.Arrays.equals(first, runSeeded(dare, f.base, f.models, 6, shape)),
                "another seed draws another mask");
        int kept = 0;
        for (int j = 0; j < numel; j++) {
            double tau = f.models[0][j] - f.base[j];
            double got = first[j] - f.base[j];
            if (Math.abs(got) > 1e-6) {
                kept++;
                assertEquals(tau / 0.3, got, 1e-5, "a kept entry is rescaled by 1/density");
            } else {
                assertEquals(0, got, 1e-6);
            }
        }
        // binomial(20000, 0.3): sd 65, so +-400 is over six sd
        assertTrue(Math.abs(kept - 6000) < 400, "kept " + kept + " of 20000 at density 0.3");
    }

    @Test
    void modelsGetIndependentMasks() {
        int numel = 4000;
        Shape shape = new Shape(numel);
        double[] base = new double[numel];
        double[] tau = filled(numel, 1);
        MergeMethod dare = Fixture.method(MergeTechniques.dare(), Map.of("density", "0.5", "rescale", "none"));
        float[] merged = runSeeded(dare, base, new double[][] {tau, tau}, 9, shape);
        int once = 0;
        for (float v : merged) {
            if (v == 1f) {
                once++;
            }
        }
        // kept by exactly one of two independent masks: probability 0.5 (identical masks would give 0)
        assertTrue(Math.abs(once - 2000) < 250, "entries kept by exactly one model: " + once);
    }
}
