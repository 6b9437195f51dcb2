package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.augment.MixedBatch;
import java.util.HashSet;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class MixupTest {
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    /**
     * Labels are distinct per sample, so with no smoothing the target of sample i at its own class is exactly its
     * coefficient: that lets the test check inputs against targets without knowing the sampler's draw order. The
     * expected inputs are computed in float64 from the host copy of the batch.
     */
    private void checkConvexCombination(String mode, String pairing, long seed, int n) {
        int k = n + 2;
        Random r = new Random(seed);
        NDArray x = Fixtures.images(manager, r, n, 2, 3, 5);
        long[] y = new long[n];
        for (int i = 0; i < n; i++) {
            y[i] = i;
        }
        double[] before = Fixtures.host(x);
        Map<String, String> params = pairing == null ? Map.of("alpha", "0.7", "mode", mode)
                : Map.of("alpha", "0.7", "mode", mode, "pairing", pairing);
        MixedBatch out = Fixtures.mix(Fixtures.create("mixup", params), x, manager.create(y), k, seed);
        double[][] t = Fixtures.rows(out.targets());
        double[] mixed = Fixtures.host(out.inputs());
        int per = 2 * 3 * 5;
        boolean anyMixed = false;
        for (int i = 0; i < n; i++) {
            double lam = t[i][(int) y[i]];
            // the partner is the one other class with mass (or none when paired with itself)
            int partner = i;
            for (int c = 0; c < k; c++) {
                if (c != y[i] && t[i][c] > 0) {
                    partner = c;
                }
            }
            if (partner == i) {
                assertEquals(1.0, lam, 1e-6, "a sample paired with itself keeps its label");
            } else {
                assertEquals(1.0, lam + t[i][partner], 1e-6, "row " + i + " sums to 1");
                anyMixed = true;
            }
            if (pairing == null || !pairing.equals("permute")) {
                String fixed = pairing == null ? "halves" : pairing;
                assertEquals(Fixtures.partner(i, n, fixed), partner, fixed + " partner of " + i + " in " + n);
            }
            for (int p = 0; p < per; p++) {
                double expected = lam * before[i * per + p] + (1 - lam) * before[partner * per + p];
                assertEquals(expected, mixed[i * per + p], 1e-5, "sample " + i + " element " + p);
            }
        }
        assertTrue(n == 1 || anyMixed, "some sample was mixed");
        assertTrue(java.util.Arrays.equals(before, Fixtures.host(x)), "inputs must not be modified");
    }

    @Test
    void batchModeIsAConvexCombination() {
        checkConvexCombination("batch", "flip", 1, 6);
    }

    @Test
    void elemModeIsAConvexCombinationPerSample() {
        checkConvexCombination("elem", "flip", 2, 6);
    }

    @Test
    void permutationPairingIsAConvexCombination() {
        for (long seed = 3; seed < 6; seed++) {
            checkConvexCombination("elem", "permute", seed, 6);
        }
    }

    @Test
    void halvesPairingIsTheDefaultAndAConvexCombinationForEveryBatchSize() {
        // Even sizes take the one-product path in batch mode; odd sizes (the last sample keeps itself) and elem
        // mode take the gather-and-blend path. Both must give the same float64 reference.
        for (int n : new int[] {1, 2, 3, 6, 7, 10}) {
            for (long seed = 10; seed < 13; seed++) {
                checkConvexCombination("batch", null, seed, n);
                checkConvexCombination("batch", "halves", seed, n);
                checkConvexCombination("elem", "halves", seed, n);
            }
        }
    }

    @Test
    void batchModeSharesOneLambdaElemModeDoesNot() {
        NDArray x = Fixtures.images(manager, new Random(0), 4, 1, 2, 2);
        NDArray y = manager.create(new long[] {0, 1, 2, 3});
        Set<Double> batchLams = new HashSet<>();
        double[][] tb = Fixtures.rows(Fixtures.mix(Fixtures.create("mixup", Map.of("alpha", "1.0")), x, y, 4, 9)
                .targets());
        double[][] te = Fixtures.rows(Fixtures.mix(Fixtures.create("mixup", Map.of("alpha", "1.0", "mode", "elem")),
                x, y, 4, 9).targets());
        Set<Double> elemLams = new HashSet<>();
        for (int i = 0; i < 4; i++) {
            batchLams.add(Math.round(tb[i][i] * 1e6) / 1e6);
            elemLams.add(Math.round(te[i][i] * 1e6) / 1e6);
        }
        assertEquals(1, batchLams.size(), "batch mode: one lambda");
        assertEquals(4, elemLams.size(), "elem mode: one lambda per sample");
    }

    @Test
    void lambdaFollowsBetaMean() {
        // Over many batches the coefficient of Beta(a, a) averages 0.5 and has variance 1 / (4 (2a + 1)).
        double a = 0.4;
        NDArray x = Fixtures.images(manager, new Random(0), 2, 1, 1, 1);
        NDArray y = manager.create(new long[] {0, 1});
        var aug = Fixtures.create("mixup", Map.of("alpha", "0.4", "mode", "elem"));
        Random r = new Random(17);
        double sum = 0;
        double sumSq = 0;
        int count = 0;
        for (int b = 0; b < 1000; b++) {
            try (NDManager sub = manager.newSubManager()) {
                double[][] t = Fixtures.rows(aug.mix(new dev.kiln.spi.augment.Batch(x, y, 2),
                        new dev.kiln.spi.augment.MixContext(r, 0, 1, b)).targets());
                for (int i = 0; i < 2; i++) {
                    sum += t[i][i];
                    sumSq += t[i][i] * t[i][i];
                    count++;
                }
            }
        }
        double mean = sum / count;
        double var = sumSq / count - mean * mean;
        assertEquals(0.5, mean, 0.02);
        assertEquals(1 / (4 * (2 * a + 1)), var, 0.02);
        assertNotEquals(0.0, var);
    }
}
