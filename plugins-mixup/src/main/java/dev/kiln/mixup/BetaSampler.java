package dev.kiln.mixup;

import java.util.random.RandomGenerator;

/**
 * Beta and Gamma draws on the host. DJL has no Beta or Gamma sampler, and the mixing coefficient is one scalar per
 * batch (or N scalars per batch), so drawing it in Java from the run's seeded source is both cheap and reproducible.
 *
 * <p>Gamma uses Marsaglia and Tsang (2000), "A simple method for generating gamma variables": for shape {@code a >= 1}
 * a squeeze-accepted transform of one normal; for {@code a < 1} the boost {@code G(a) = G(a + 1) * U^(1/a)}, since the
 * transform itself is only valid for {@code a >= 1}. Beta(a, b) is {@code X / (X + Y)} with independent Gamma draws.
 */
final class BetaSampler {

    private BetaSampler() {
    }

    /** One draw from Gamma(shape, 1). */
    static double gamma(RandomGenerator random, double shape) {
        if (!(shape > 0) || Double.isInfinite(shape)) {
            throw new IllegalArgumentException("gamma shape must be positive and finite, got " + shape);
        }
        if (shape < 1) {
            // U in (0, 1]: a zero would give 0^(1/a) = 0 and a degenerate Beta 0/0 when both draws vanish.
            double u = 1.0 - random.nextDouble();
            return gamma(random, shape + 1) * Math.pow(u, 1.0 / shape);
        }
        double d = shape - 1.0 / 3.0;
        double c = 1.0 / Math.sqrt(9.0 * d);
        while (true) {
            double x;
            double v;
            do {
                x = random.nextGaussian();
                v = 1.0 + c * x;
            } while (v <= 0);
            v = v * v * v;
            double u = random.nextDouble();
            double x2 = x * x;
            // The cheap squeeze accepts about 98% of candidates without a logarithm.
            if (u < 1.0 - 0.0331 * x2 * x2) {
                return d * v;
            }
            if (u > 0 && Math.log(u) < 0.5 * x2 + d * (1.0 - v + Math.log(v))) {
                return d * v;
            }
        }
    }

    /** One draw from Beta(a, b), in [0, 1]. */
    static double beta(RandomGenerator random, double a, double b) {
        double x = gamma(random, a);
        double y = gamma(random, b);
        double sum = x + y;
        if (sum == 0) {
            // Both draws underflowed (only for tiny shapes): the distribution is then two spikes at 0 and 1.
            return random.nextBoolean() ? 1.0 : 0.0;
        }
        return x / sum;
    }

    /** {@code n} independent Beta(a, a) draws. */
    static double[] symmetric(RandomGenerator random, double a, int n) {
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = beta(random, a, a);
        }
        return out;
    }
}
