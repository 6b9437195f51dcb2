package dev.kiln.core.bench;

import java.util.Arrays;
import java.util.List;

/**
 * Order statistics for timings. Percentiles interpolate linearly between the two nearest ranks (NumPy's default,
 * Hyndman and Fan type 7), so the median of an even count is the mean of the middle pair and p95 of few samples is
 * not stuck on the maximum.
 */
public final class BenchStats {
    private BenchStats() {
    }

    /**
     * The {@code p}-th percentile of {@code values}.
     *
     * @param values at least one finite value; the array is not modified
     * @param p between 0 and 100
     */
    public static double percentile(double[] values, double p) {
        if (values.length == 0) {
            throw new IllegalArgumentException("percentile of no values");
        }
        if (!(p >= 0 && p <= 100)) {
            throw new IllegalArgumentException("percentile " + p + " is outside [0, 100]");
        }
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        double rank = p / 100.0 * (sorted.length - 1);
        int below = (int) Math.floor(rank);
        int above = Math.min(below + 1, sorted.length - 1);
        double fraction = rank - below;
        return sorted[below] + fraction * (sorted[above] - sorted[below]);
    }

    /** The 50th percentile. */
    public static double median(double[] values) {
        return percentile(values, 50);
    }

    /** {@link #percentile(double[], double)} of a list. */
    public static double percentile(List<Double> values, double p) {
        return percentile(values.stream().mapToDouble(Double::doubleValue).toArray(), p);
    }

    /** {@link #median(double[])} of a list. */
    public static double median(List<Double> values) {
        return percentile(values, 50);
    }
}
