package dev.kiln.core.bench;

import dev.kiln.spi.KilnException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * Quality and speed bars a benchmark must pass. A gate without a variant applies to every variant it makes sense
 * for; one with a variant applies to that variant only. All gates are checked and every miss is listed, so one
 * failed build shows everything that needs fixing.
 */
public final class Gates {
    private Gates() {
    }

    /**
     * One set of bars; null fields are not checked.
     *
     * @param variant the variant they apply to, or null for all
     * @param minAccuracy lowest acceptable top-1 accuracy (0..1)
     * @param maxAccuracyDrop largest acceptable accuracy loss against the baseline, in accuracy points (0.01 = one
     *     percentage point); not applied to the baseline itself
     * @param minSpeedup lowest acceptable measured speedup against the baseline; not applied to the baseline itself
     * @param maxLatencyP95Millis highest acceptable 95th percentile batch latency at the stated batch size
     * @param maxPerplexity highest acceptable validation perplexity of a language model
     */
    public record Gate(String variant, Double minAccuracy, Double maxAccuracyDrop, Double minSpeedup,
            Double maxLatencyP95Millis, Double maxPerplexity) {
        public Gate {
            range("maxPerplexity", maxPerplexity, 1, Double.MAX_VALUE);
            range("minAccuracy", minAccuracy, 0, 1);
            range("maxAccuracyDrop", maxAccuracyDrop, 0, 1);
            range("minSpeedup", minSpeedup, 0, Double.MAX_VALUE);
            range("maxLatencyP95Millis", maxLatencyP95Millis, 0, Double.MAX_VALUE);
        }

        /** A gate without a perplexity bar. */
        public Gate(String variant, Double minAccuracy, Double maxAccuracyDrop, Double minSpeedup,
                Double maxLatencyP95Millis) {
            this(variant, minAccuracy, maxAccuracyDrop, minSpeedup, maxLatencyP95Millis, null);
        }

        private static void range(String name, Double value, double min, double max) {
            if (value != null && !(value >= min && value <= max)) {
                throw new KilnException("gate " + name + " is " + value + "; it must be between " + min + " and "
                        + (max == Double.MAX_VALUE ? "infinity" : max));
            }
        }
    }

    /**
     * One check of one bar against one variant.
     *
     * @param gate the gate's name, e.g. {@code minAccuracy}
     * @param variant the variant checked
     * @param bar the required value
     * @param measured the measured value
     * @param passed whether the bar was met
     */
    public record Check(String gate, String variant, double bar, double measured, boolean passed) {
        /** "gate minAccuracy for variant 'full' missed: measured 0.8731 < required 0.95" (or "... met: ..."). */
        public String message() {
            boolean lower = gate.startsWith("min");
            String relation = passed ? (lower ? ">=" : "<=") : (lower ? "<" : ">");
            return String.format(Locale.ROOT, "gate %s for variant '%s' %s: measured %s %s %s %s", gate, variant,
                    passed ? "met" : "missed", format(measured), relation, lower ? "required" : "allowed",
                    format(bar));
        }
    }

    /** Fails when a gate names a variant that is not measured, before any measuring starts. */
    public static void validate(Collection<Gate> gates, Collection<String> variantNames) {
        for (Gate gate : gates) {
            if (gate.variant() != null && !variantNames.contains(gate.variant())) {
                throw new KilnException("a gate names variant '" + gate.variant() + "', but the variants are: "
                        + String.join(", ", variantNames));
            }
        }
    }

    /** Every check of every gate, in gate order. */
    public static List<Check> evaluate(Collection<Gate> gates, BenchmarkResult result) {
        validate(gates, result.variants().stream().map(BenchmarkResult.VariantResult::name).toList());
        BenchmarkResult.VariantResult baseline = result.baseline();
        List<Check> checks = new ArrayList<>();
        for (Gate gate : gates) {
            for (BenchmarkResult.VariantResult v : result.variants()) {
                if (gate.variant() != null && !gate.variant().equals(v.name())) {
                    continue;
                }
                if (gate.minAccuracy() != null) {
                    checks.add(new Check("minAccuracy", v.name(), gate.minAccuracy(), v.accuracy(),
                            v.accuracy() >= gate.minAccuracy()));
                }
                if (gate.maxAccuracyDrop() != null && !v.baseline()) {
                    double drop = baseline.accuracy() - v.accuracy();
                    checks.add(new Check("maxAccuracyDrop", v.name(), gate.maxAccuracyDrop(), drop,
                            drop <= gate.maxAccuracyDrop()));
                }
                if (gate.minSpeedup() != null && !v.baseline()) {
                    checks.add(new Check("minSpeedup", v.name(), gate.minSpeedup(), v.speedup(),
                            v.speedup() >= gate.minSpeedup()));
                }
                if (gate.maxPerplexity() != null) {
                    checks.add(new Check("maxPerplexity", v.name(), gate.maxPerplexity(), v.perplexity(),
                            v.perplexity() <= gate.maxPerplexity()));
                }
                if (gate.maxLatencyP95Millis() != null) {
                    checks.add(new Check("maxLatencyP95Millis", v.name(), gate.maxLatencyP95Millis(),
                            v.latencyP95Millis(), v.latencyP95Millis() <= gate.maxLatencyP95Millis()));
                }
            }
        }
        return checks;
    }

    /** The misses among {@code checks}. */
    public static List<Check> misses(List<Check> checks) {
        return checks.stream().filter(c -> !c.passed()).toList();
    }

    /** The exception a build fails with: every miss on its own line. */
    public static KilnException failure(List<Check> misses, String reportHint) {
        StringBuilder text = new StringBuilder();
        text.append(misses.size()).append(misses.size() == 1 ? " benchmark gate" : " benchmark gates")
                .append(" missed");
        if (reportHint != null) {
            text.append(" (report: ").append(reportHint).append(')');
        }
        text.append(':');
        for (Check miss : misses) {
            text.append("\n  ").append(miss.message());
        }
        return new KilnException(text.toString());
    }

    /** Four significant decimals, without trailing zeros: 0.8731, 1.5, 12.25. */
    static String format(double value) {
        if (!Double.isFinite(value)) {
            return Double.toString(value);
        }
        String text = String.format(Locale.ROOT, "%.4f", value);
        text = text.replaceAll("0+$", "");
        return text.endsWith(".") ? text.substring(0, text.length() - 1) : text;
    }
}
