package dev.kiln.merge;

import static dev.kiln.merge.Fixture.assertClose;
import static dev.kiln.merge.Fixture.filled;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** linear, slerp, model-stock, fisher and pcb against the float64 reference, plus hand-computed cases. */
class OtherMethodsTest {
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

    @Test
    void linearMatchesReference() {
        for (Fixture f : TaskVectorMethodsTest.scenarios()) {
            for (boolean normalize : new boolean[] {true, false}) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.linear(),
                        Map.of("normalize", "" + normalize)), SHAPE, null, null, false);
                assertClose(Reference.linear(f.models, f.weights, normalize), got, "linear " + normalize);
            }
        }
        // (1, 2) with weight 1 and (3, 6) with weight 3: (1 + 9, 2 + 18) / 4 = (2.5, 5)
        Fixture hand = new Fixture(new double[2], new double[][] {{1, 2}, {3, 6}}, new double[] {1, 3});
        assertClose(new double[] {2.5, 5}, hand.run(manager, Fixture.method(MergeTechniques.linear(), Map.of()),
                new Shape(2), null, null, false), "linear hand");
    }

    @Test
    void slerpMatchesReference() {
        for (long seed = 20; seed < 24; seed++) {
            Fixture f = Fixture.random(seed, 2, 42, 1.0 / 1024, seed == 21 ? 0.3 : 0, false);
            for (double t : new double[] {0, 0.25, 0.5, 0.9, 1}) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.slerp(), Map.of("t", "" + t)), SHAPE,
                        null, null, false);
                assertClose(Reference.slerp(f.models[0], f.models[1], t), got, "slerp t=" + t);
            }
        }
        // colinear: model 1 = 2 * model 0 -> linear interpolation, (1 - t) a + t 2a = 1.5 a at t = 0.5
        double[] a = {1, -2, 0.5, 3};
        double[] b = {2, -4, 1, 6};
        Fixture colinear = new Fixture(new double[4], new double[][] {a, b}, filled(2, 1));
        assertClose(new double[] {1.5, -3, 0.75, 4.5}, colinear.run(manager,
                Fixture.method(MergeTechniques.slerp(), Map.of("t", "0.5")), new Shape(4), null, null, false),
                "slerp colinear");
        // orthogonal unit vectors (1, 0), (0, 1) at t = 0.5: omega = pi/2, both coefficients sin(pi/4) = 0.70711
        Fixture orthogonal = new Fixture(new double[2], new double[][] {{1, 0}, {0, 1}}, filled(2, 1));
        assertClose(new double[] {Math.sqrt(0.5), Math.sqrt(0.5)}, orthogonal.run(manager,
                Fixture.method(MergeTechniques.slerp(), Map.of()), new Shape(2), null, null, false), "slerp hand");
    }

    @Test
    void modelStockMatchesReference() {
        for (int n : new int[] {2, 3, 5}) {
            Fixture f = Fixture.random(30 + n, n, 42, 1.0 / 1024, 0.2, n == 3);
            // shared direction so cosines are positive as in fine-tunes of one base
            for (int j = 0; j < 42; j++) {
                for (int i = 0; i < n; i++) {
                    f.models[i][j] += (j % 5) / 8.0;
                }
            }
            for (boolean filterWise : new boolean[] {false, true}) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.modelStock(),
                        Map.of("filter-wise", "" + filterWise)), SHAPE);
                assertClose(Reference.modelStock(f.base, f.models, filterWise ? 7 : 42), got,
                        "model-stock n=" + n + " filter-wise=" + filterWise);
            }
        }
        // base 0; tau1 (1, 1), tau2 (1, 0): cos = 1/sqrt2, t = 2c / (1 + c) = 0.828427; mean (1, 0.5)
        // -> (0.828427, 0.414214)
        Fixture hand = new Fixture(new double[2], new double[][] {{1, 1}, {1, 0}}, filled(2, 1));
        assertClose(new double[] {0.8284271, 0.4142136}, hand.run(manager,
                Fixture.method(MergeTechniques.modelStock(), Map.of()), new Shape(2)), "model-stock hand");
        // zero task vectors: cos = 0, t = 0, the base comes back
        Fixture zero = Fixture.random(39, 3, 42, 0.25, 1.0, false);
        assertClose(zero.base, zero.run(manager, Fixture.method(MergeTechniques.modelStock(), Map.of()), SHAPE),
                "model-stock zero deltas");
    }

    @Test
    void fisherMatchesReference() {
        for (Fixture f : TaskVectorMethodsTest.scenarios()) {
            Random rng = new Random(f.models.length);
            double[][] fisher = new double[f.models.length][42];
            for (double[] row : fisher) {
                for (int j = 0; j < 42; j++) {
                    // some exact zeros and negatives exercise the floor
                    row[j] = j % 7 == 0 ? 0 : j % 11 == 0 ? -0.5 : rng.nextDouble() * 3;
                }
            }
            for (double eps : new double[] {1e-6, 0.1}) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.fisher(),
                        Map.of("epsilon", "" + eps)), SHAPE, null, fisher, false);
                assertClose(Reference.fisher(f.models, fisher, f.weights, eps), got, "fisher eps=" + eps);
            }
        }
        // theta (1, 5), (3, 5); Fisher (1, 0), (3, 0): (1*1 + 3*3) / 4 = 2.5; the second element has no Fisher
        // anywhere, so the floor makes it the plain average 5
        Fixture hand = new Fixture(new double[2], new double[][] {{1, 5}, {3, 5}}, filled(2, 1));
        assertClose(new double[] {2.5, 5}, hand.run(manager, Fixture.method(MergeTechniques.fisher(), Map.of()),
                new Shape(2), null, new double[][] {{1, 0}, {3, 0}}, false), "fisher hand");
    }

    @Test
    void pcbMatchesReference() {
        String[][] settings = {{"0.1", "0.0001", "0", "1.0"}, {"0.3", "0.05", "0", "1.2"},
            {"1.0", "0.0", "2.5", "0.7"}, {"0.05", "0.0001", "0", "1.0"}};
        for (Fixture f : TaskVectorMethodsTest.scenarios()) {
            for (String[] s : settings) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.pcb(), Map.of("ratio", s[0],
                        "clip-ratio", s[1], "temperature", s[2], "lambda", s[3])), SHAPE);
                double[] want = Reference.pcb(f.base, f.models, f.weights, Double.parseDouble(s[0]),
                        Double.parseDouble(s[1]), Double.parseDouble(s[2]), Double.parseDouble(s[3]));
                assertClose(want, got, "pcb " + String.join(",", s) + " n=" + f.models.length);
            }
        }
        // a bigger tensor so the clipping order statistics are not the extremes
        Fixture big = Fixture.random(50, 4, 30000, 1.0 / 1024, 0.1, true);
        double[] got = big.run(manager, Fixture.method(MergeTechniques.pcb(), Map.of("clip-ratio", "0.001")),
                new Shape(150, 200));
        assertClose(Reference.pcb(big.base, big.models, big.weights, 0.1, 0.001, 0, 1), got, "pcb big");
    }

    @Test
    void pcbByHand() {
        // one model, base 0, tau (1, 2, 3, 4), ratio 0.75, clip 1e-4:
        //   |tau| clamped to sorted[floor(4e-4)] = 1 and sorted[floor(4 * 0.9999 - 1) = 2] = 3 -> (1, 2, 3, 3)
        //   intra exp(1 * minmax^2) = exp((0, .25, 1, 1)) = (1, 1.2840, 2.7183, 2.7183)
        //   inter tanh(tau * tau) = tanh(1, 4, 9, 16) = (.76159, .99933, 1.0, 1.0)
        //   scores (.76159, 1.28318, 2.71828, 2.71828), clamped below at sorted[floor(4 * .25) = 1] = 1.28318
        //   min-max -> scale (0, 0, 1, 1); merged = (3 + 3) / 2 = 3 on the kept entries -> (0, 0, 3, 3)
        Fixture f = new Fixture(new double[4], new double[][] {{1, 2, 3, 4}}, filled(1, 1));
        double[] got = f.run(manager, Fixture.method(MergeTechniques.pcb(), Map.of("ratio", "0.75")),
                new Shape(4), List.of(Map.of()), null, true);
        assertClose(new double[] {0, 0, 3, 3}, got, "pcb hand");
    }
}
