package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class DecoupledMixupTest {
    private static final int K = 6;
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    /** -log(exp(z[keep]) / sum over c != drop of exp(z[c])), in float64. */
    private static double decoupledNll(double[] z, int keep, int drop) {
        double sum = 0;
        for (int c = 0; c < z.length; c++) {
            if (c != drop) {
                sum += Math.exp(z[c]);
            }
        }
        return Math.log(sum) - z[keep];
    }

    @ParameterizedTest
    @CsvSource({"both,1.0", "less,1.0", "more,0.5", "both,0"})
    void lossTermEqualsFloat64Reference(String mode, double power) {
        double eta = 0.3;
        // labels chosen so that the default (halves) pairs 1<->4 share class 2: those samples get no decoupled term
        long[] y = {0, 2, 3, 5, 2, 1};
        int n = y.length;
        for (long seed = 0; seed < 4; seed++) {
            try (NDManager sub = manager.newSubManager()) {
                NDArray x = Fixtures.images(sub, new Random(seed), n, 1, 2, 2);
                MixedBatch out = Fixtures.create("decoupled", Map.of("eta", "0.3", "eta-mode", mode,
                        "lambda-power", Double.toString(power), "alpha", "2.0"))
                        .mix(new dev.kiln.spi.augment.Batch(x, sub.create(y), K), Fixtures.context(seed));
                double[][] t = Fixtures.rows(out.targets());
                double lam = t[0][(int) y[0]];
                assertEquals(1 - lam, t[0][(int) y[Fixtures.partner(0, n)]], 1e-6);
                assertNotNull(out.extraLoss());
                Random r = new Random(100 + seed);
                double[][] z = new double[n][K];
                float[] flat = new float[n * K];
                for (int i = 0; i < n; i++) {
                    for (int c = 0; c < K; c++) {
                        flat[i * K + c] = (float) (3 * r.nextGaussian());
                        z[i][c] = flat[i * K + c];
                    }
                }
                double etaA = eta * Math.pow(lam, power);
                double etaB = eta * Math.pow(1 - lam, power);
                if (mode.equals("less")) {
                    if (lam < 0.5) {
                        etaB = 0;
                    } else {
                        etaA = 0;
                    }
                } else if (mode.equals("more")) {
                    if (lam >= 0.5) {
                        etaB = 0;
                    } else {
                        etaA = 0;
                    }
                }
                double expected = 0;
                for (int i = 0; i < n; i++) {
                    int a = (int) y[i];
                    int b = (int) y[Fixtures.partner(i, n)];
                    if (a != b) {
                        expected += etaA * decoupledNll(z[i], a, b) + etaB * decoupledNll(z[i], b, a);
                    }
                }
                expected /= n;
                double got = out.extraLoss().compute(sub.create(flat, new Shape(n, K))).getFloat();
                assertEquals(expected, got, 1e-5 * Math.max(1, Math.abs(expected)), mode + " seed " + seed);
            }
        }
    }

    @Test
    void termIsLargerWhenTheModelSplitsConfidenceBetweenTheMixedClasses() {
        // Each mixed class is scored with the other mixed class removed from the softmax, so a model confident in
        // both mixed classes is not punished for splitting, while mass on a third class is.
        long[] y = {0, 1};
        NDArray x = Fixtures.images(manager, new Random(1), 2, 1, 2, 2);
        MixedBatch out = Fixtures.create("decoupled", Map.of())
                .mix(new dev.kiln.spi.augment.Batch(x, manager.create(y), 3), Fixtures.context(4));
        float good = out.extraLoss().compute(manager.create(new float[] {5, 5, -5, 5, 5, -5}, new Shape(2, 3)))
                .getFloat();
        float bad = out.extraLoss().compute(manager.create(new float[] {0, 0, 5, 0, 0, 5}, new Shape(2, 3)))
                .getFloat();
        assertTrue(good < bad, good + " vs " + bad);
    }

    @Test
    void logitsOfTheWrongShapeAreRejected() {
        NDArray x = Fixtures.images(manager, new Random(1), 2, 1, 2, 2);
        MixedBatch out = Fixtures.create("decoupled", Map.of())
                .mix(new dev.kiln.spi.augment.Batch(x, manager.create(new long[] {0, 1}), 3), Fixtures.context(4));
        KilnException e = assertThrows(KilnException.class,
                () -> out.extraLoss().compute(manager.zeros(new Shape(2, 4))));
        assertTrue(e.getMessage().contains("logits") && e.getMessage().contains("(2, 4)"), e.getMessage());
    }

    @Test
    void noTermWhenEtaIsZeroOrAllPairsShareAClass() {
        NDArray x = Fixtures.images(manager, new Random(1), 2, 1, 2, 2);
        assertNull(Fixtures.create("decoupled", Map.of("eta", "0"))
                .mix(new dev.kiln.spi.augment.Batch(x, manager.create(new long[] {0, 1}), 3), Fixtures.context(4))
                .extraLoss());
        MixedBatch same = Fixtures.create("decoupled", Map.of())
                .mix(new dev.kiln.spi.augment.Batch(x, manager.create(new long[] {2, 2}), 3), Fixtures.context(4));
        assertEquals(0f, same.extraLoss().compute(manager.create(new float[] {1, 2, 3, 4, 5, 6}, new Shape(2, 3)))
                .getFloat(), 0f);
    }
}
