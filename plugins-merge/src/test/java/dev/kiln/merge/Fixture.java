package dev.kiln.merge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Technique;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;

/**
 * Test inputs and a runner. Inputs sit on exact binary grids (base on multiples of 2^-8, task vectors on multiples
 * of {@code step}) so that float32 subtraction is exact and magnitude ranks and sign sums are decided identically
 * in float32 and in the float64 reference.
 */
final class Fixture {
    final double[] base;
    final double[][] models;
    final double[] weights;

    Fixture(double[] base, double[][] models, double[] weights) {
        this.base = base;
        this.models = models;
        this.weights = weights;
    }

    /**
     * Random inputs: {@code n} models of {@code numel} elements, task vectors in [-1, 1] on multiples of
     * {@code step} (a coarse step makes many equal magnitudes), a {@code zeros} fraction of exactly-zero task
     * entries, and weights from {0.5, 1, 1.5, 2} when {@code weighted}.
     */
    static Fixture random(long seed, int n, int numel, double step, double zeros, boolean weighted) {
        Random rng = new Random(seed);
        double[] base = new double[numel];
        for (int j = 0; j < numel; j++) {
            base[j] = (rng.nextInt(1025) - 512) / 256.0;
        }
        double[][] models = new double[n][numel];
        int steps = (int) Math.round(1 / step);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < numel; j++) {
                double tau = rng.nextDouble() < zeros ? 0 : (rng.nextInt(2 * steps + 1) - steps) * step;
                models[i][j] = base[j] + tau;
            }
        }
        double[] weights = new double[n];
        for (int i = 0; i < n; i++) {
            weights[i] = weighted ? 0.5 * (1 + rng.nextInt(4)) : 1;
        }
        return new Fixture(base, models, weights);
    }

    /** Whether some element has task-vector entries of opposite signs in two models. */
    boolean hasSignConflict() {
        for (int j = 0; j < base.length; j++) {
            boolean pos = false;
            boolean neg = false;
            for (double[] m : models) {
                pos |= m[j] > base[j];
                neg |= m[j] < base[j];
            }
            if (pos && neg) {
                return true;
            }
        }
        return false;
    }

    /** Whether some model has two non-zero task-vector entries of equal magnitude. */
    boolean hasMagnitudeTies() {
        for (double[] m : models) {
            java.util.Set<Double> seen = new java.util.HashSet<>();
            for (int j = 0; j < base.length; j++) {
                double a = Math.abs(m[j] - base[j]);
                if (a > 0 && !seen.add(a)) {
                    return true;
                }
            }
        }
        return false;
    }

    static MergeMethod method(Technique<?> technique, Map<String, String> params) {
        return (MergeMethod) technique.create(Parameters.bind(technique, params));
    }

    static NDArray array(NDManager manager, double[] values, Shape shape) {
        float[] f = new float[values.length];
        for (int j = 0; j < f.length; j++) {
            f[j] = (float) values[j];
        }
        return manager.create(f, shape);
    }

    /** Runs {@code method} on the fixture; per-model overrides and statistics may be null. */
    double[] run(NDManager manager, MergeMethod method, Shape shape, List<Map<String, Double>> overrides,
            double[][] statistics, boolean withBase) {
        try (NDManager inputs = manager.newSubManager()) {
            List<ModelTensor> tensors = new ArrayList<>();
            for (int i = 0; i < models.length; i++) {
                tensors.add(new ModelTensor(array(inputs, models[i], shape), weights[i],
                        overrides == null ? Map.of() : overrides.get(i),
                        statistics == null ? null : array(inputs, statistics[i], shape)));
            }
            NDArray baseArray = withBase ? array(inputs, base, shape) : null;
            NDArray result = method.merge(new MergeInput("layers.0.weight", baseArray, tensors,
                    new SplittableRandom(42)));
            assertEquals(shape, result.getShape());
            assertEquals(DataType.FLOAT32, result.getDataType());
            float[] f = result.toFloatArray();
            double[] out = new double[f.length];
            for (int j = 0; j < f.length; j++) {
                out[j] = f[j];
            }
            return out;
        }
    }

    double[] run(NDManager manager, MergeMethod method, Shape shape) {
        return run(manager, method, shape, null, null, true);
    }

    /** Max abs difference within 1e-5 of the reference's scale. */
    static void assertClose(double[] expected, double[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        double scale = 1;
        for (double v : expected) {
            scale = Math.max(scale, Math.abs(v));
        }
        double worst = 0;
        int at = -1;
        for (int j = 0; j < expected.length; j++) {
            double diff = Math.abs(expected[j] - actual[j]);
            if (!(diff <= worst)) {
                worst = diff;
                at = j;
            }
        }
        assertTrue(worst <= 1e-5 * scale, what + ": max abs diff " + worst + " at " + at + " (expected "
                + (at < 0 ? "" : expected[at]) + ", got " + (at < 0 ? "" : actual[at]) + ")");
    }

    static double[] filled(int n, double value) {
        double[] out = new double[n];
        java.util.Arrays.fill(out, value);
        return out;
    }
}
