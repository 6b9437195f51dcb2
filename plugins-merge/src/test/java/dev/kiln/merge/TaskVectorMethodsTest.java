package dev.kiln.merge;

import static dev.kiln.merge.Fixture.assertClose;
import static dev.kiln.merge.Fixture.filled;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.Technique;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** task-arithmetic, ties and breadcrumbs against the float64 reference, plus hand-computed cases. */
class TaskVectorMethodsTest {
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

    /** Single model, equal magnitudes with sign conflicts, five weighted models with zeros, all-zero deltas. */
    static List<Fixture> scenarios() {
        return List.of(
                Fixture.random(1, 1, 42, 1.0 / 1024, 0.2, false),
                Fixture.random(2, 2, 42, 0.25, 0.1, false),
                Fixture.random(3, 5, 42, 1.0 / 1024, 0.3, true),
                Fixture.random(4, 3, 42, 0.25, 0.2, true),
                Fixture.random(5, 3, 42, 0.25, 1.0, true));
    }

    @Test
    void scenariosCoverConflictsAndTies() {
        Fixture coarse = scenarios().get(1);
        assertTrue(coarse.hasSignConflict() && coarse.hasMagnitudeTies());
        assertTrue(scenarios().get(2).hasSignConflict());
    }

    @Test
    void taskArithmeticMatchesReference() {
        for (Fixture f : scenarios()) {
            for (double lambda : new double[] {1.0, 0.3, -0.5}) {
                for (boolean normalize : new boolean[] {false, true}) {
                    double[] got = f.run(manager, Fixture.method(MergeTechniques.taskArithmetic(),
                            Map.of("lambda", "" + lambda, "normalize", "" + normalize)), SHAPE);
                    double[][] deltas = new double[f.models.length][];
                    for (int i = 0; i < deltas.length; i++) {
                        deltas[i] = Reference.delta(f.models[i], f.base);
                    }
                    double[] want = Reference.combine(f.base, deltas, f.weights, false, false, normalize, lambda);
                    assertClose(want, got, "task-arithmetic lambda=" + lambda + " normalize=" + normalize);
                }
            }
        }
    }

    @Test
    void taskArithmeticByHand() {
        // base (1, 1); tau1 = (1, -1), tau2 = (0, 2); lambda 0.5 -> base + 0.5 * (1, 1) = (1.5, 1.5)
        Fixture f = new Fixture(new double[] {1, 1}, new double[][] {{2, 0}, {1, 3}}, new double[] {1, 1});
        double[] got = f.run(manager, Fixture.method(MergeTechniques.taskArithmetic(), Map.of("lambda", "0.5")),
                new Shape(2));
        assertClose(new double[] {1.5, 1.5}, got, "hand");
    }

    @Test
    void tiesMatchesReference() {
        String[][] settings = {
            {"1.0", "sum", "true", "1.0"}, {"0.5", "sum", "true", "1.0"}, {"0.3", "count", "true", "0.8"},
            {"0.5", "sum", "false", "1.2"}, {"0.7", "count", "false", "1.0"}, {"0.02", "sum", "true", "1.0"}};
        for (Fixture f : scenarios()) {
            for (String[] s : settings) {
                double density = Double.parseDouble(s[0]);
                double[] got = f.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", s[0],
                        "sign-method", s[1], "normalize", s[2], "lambda", s[3])), SHAPE);
                double[] want = Reference.ties(f.base, f.models, f.weights, filled(f.models.length, density),
                        s[1].equals("count"), Boolean.parseBoolean(s[2]), Double.parseDouble(s[3]));
                assertClose(want, got, "ties " + String.join(",", s) + " n=" + f.models.length);
            }
        }
    }

    /**
     * Zero and negative weights take the comparison path of the sign consensus (the comparison-free one needs positive
     * weights); both must agree with the reference, including a divisor that sums to zero.
     */
    @Test
    void tiesWithNonPositiveWeightsMatchesReference() {
        Fixture random = scenarios().get(3);
        for (double[] weights : new double[][] {{1, -0.5, 2}, {1, 0, 0.5}, {1, -1, 1}}) {
            Fixture f = new Fixture(random.base, random.models, weights);
            for (String normalize : new String[] {"true", "false"}) {
                double[] got = f.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", "0.6",
                        "normalize", normalize)), SHAPE);
                double[] want = Reference.ties(f.base, f.models, weights, filled(f.models.length, 0.6), false,
                        Boolean.parseBoolean(normalize), 1);
                assertClose(want, got, "ties weights " + java.util.Arrays.toString(weights) + " normalize="
                        + normalize);
            }
        }
    }

    @Test
    void tiesPerModelDensity() {
        Fixture f = scenarios().get(3);
        List<Map<String, Double>> overrides = List.of(Map.of("density", 0.2), Map.of(), Map.of("density", 0.9));
        double[] got = f.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", "0.5")), SHAPE,
                overrides, null, true);
        double[] want = Reference.ties(f.base, f.models, f.weights, new double[] {0.2, 0.5, 0.9}, false, true, 1);
        assertClose(want, got, "ties per-model density");
    }

    @Test
    void trimmingRefusesNonFiniteTaskVectorsNamingTheModel() {
        for (double bad : new double[] {Double.NaN, Double.POSITIVE_INFINITY}) {
            Fixture f = new Fixture(new double[4], new double[][] {{3, -2, 1, 0}, {-1, bad, 2, 5}}, filled(2, 1));
            for (Technique<?> t : List.of(MergeTechniques.ties(), MergeTechniques.breadcrumbs())) {
                dev.kiln.spi.KilnException e = org.junit.jupiter.api.Assertions.assertThrows(
                        dev.kiln.spi.KilnException.class,
                        () -> f.run(manager, Fixture.method(t, Map.of("density", "0.5")), new Shape(4)));
                assertTrue(e.getMessage().contains("model 1") && e.getMessage().contains("finite")
                        && e.getMessage().contains(t.id()), e.getMessage());
            }
        }
        // without trimming nothing is ranked: the non-finite value passes through (the pipeline decides)
        Fixture f = new Fixture(new double[2], new double[][] {{1, 2}, {Double.NaN, 4}}, filled(2, 1));
        double[] got = f.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", "1.0")),
                new Shape(2));
        assertTrue(Double.isNaN(got[0]) && got[1] == 3, java.util.Arrays.toString(got));
    }

    @Test
    void tiesByHand() {
        // base 0; density 0.5 keeps 2 of 4 per model:
        //   tau1 (3, -2, 1, 0) -> (3, -2, 0, 0); tau2 (-1, -4, 2, 5) -> (0, -4, 0, 5); tau3 (2, 1, -3, -1) -> (2, 0, -3, 0)
        // summed: (5, -6, -3, 5) -> elected (+, -, -, +)
        // agreeing means: (3+2)/2 = 2.5, (-2-4)/2 = -3, -3/1 = -3, 5/1 = 5
        Fixture f = new Fixture(new double[4], new double[][] {{3, -2, 1, 0}, {-1, -4, 2, 5}, {2, 1, -3, -1}},
                filled(3, 1));
        double[] got = f.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", "0.5")),
                new Shape(4));
        assertClose(new double[] {2.5, -3, -3, 5}, got, "ties hand");
        // equal magnitudes are taken in index order: k = 3 of (1, -1, 1, -1, .5, .5) keeps indices 0, 1, 2
        Fixture tie = new Fixture(new double[6], new double[][] {{1, -1, 1, -1, 0.5, 0.5}}, filled(1, 1));
        double[] kept = tie.run(manager, Fixture.method(MergeTechniques.ties(), Map.of("density", "0.5")),
                new Shape(6));
        assertArrayEquals(new double[] {1, -1, 1, 0, 0, 0}, kept, 0);
    }

    @Test
    void breadcrumbsMatchesReference() {
        String[][] settings = {
            {"1.0", "0.01", "none"}, {"0.5", "0.1", "none"}, {"0.8", "0.3", "none"}, {"0.5", "0.0", "ties"},
            {"0.3", "0.05", "ties"}, {"0.9", "0.01", "none"}};
        for (Fixture f : scenarios()) {
            for (String[] s : settings) {
                double density = Double.parseDouble(s[0]);
                double gamma = Double.parseDouble(s[1]);
                double[] got = f.run(manager, Fixture.method(MergeTechniques.breadcrumbs(), Map.of("density", s[0],
                        "gamma", s[1], "consensus", s[2], "lambda", "0.9")), SHAPE);
                double[] want = Reference.breadcrumbs(f.base, f.models, f.weights, filled(f.models.length, density),
                        filled(f.models.length, gamma), s[2].equals("ties"), false, 0.9);
                assertClose(want, got, "breadcrumbs " + String.join(",", s) + " n=" + f.models.length);
            }
        }
    }

    @Test
    void breadcrumbsPerModelOverrides() {
        Fixture f = scenarios().get(2);
        List<Map<String, Double>> overrides = List.of(Map.of("gamma", 0.2), Map.of("density", 0.3), Map.of(),
                Map.of("density", 0.6, "gamma", 0.0), Map.of());
        double[] got = f.run(manager, Fixture.method(MergeTechniques.breadcrumbs(),
                Map.of("density", "0.5", "gamma", "0.1", "normalize", "true")), SHAPE, overrides, null, true);
        double[] want = Reference.breadcrumbs(f.base, f.models, f.weights, new double[] {0.5, 0.3, 0.5, 0.6, 0.5},
                new double[] {0.2, 0.1, 0.1, 0.0, 0.1}, false, true, 1);
        assertClose(want, got, "breadcrumbs overrides");
    }

    @Test
    void breadcrumbsByHand() {
        // n = 10, density 0.5 keeps 5, gamma 0.1 drops the 1 largest (5 at index 1) and the 4 smallest
        // (0.05, 0.1, -0.2, 0.5 at indices 8, 0, 4, 3); kept: 1, 2, -3, 3, -4 at indices 6, 5, 2, 9, 7.
        double[] tau = {0.1, 5, -3, 0.5, -0.2, 2, 1, -4, 0.05, 3};
        Fixture f = new Fixture(new double[10], new double[][] {tau}, filled(1, 1));
        double[] got = f.run(manager, Fixture.method(MergeTechniques.breadcrumbs(),
                Map.of("density", "0.5", "gamma", "0.1")), new Shape(10));
        assertClose(new double[] {0, 0, -3, 0, 0, 2, 1, -4, 0, 3}, got, "breadcrumbs hand");
    }
}
