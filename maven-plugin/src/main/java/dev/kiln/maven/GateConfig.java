package dev.kiln.maven;

/**
 * The bars of one variant: {@code <gate><variant>half</variant><minSpeedup>1.5</minSpeedup></gate>}. Unset bars
 * are not checked.
 */
public class GateConfig {
    /** The variant these bars apply to (required inside {@code <gate>}). */
    private String variant;

    /** Lowest acceptable top-1 test accuracy, 0 to 1. */
    private Double minAccuracy;

    /** Largest acceptable accuracy loss against the baseline, in accuracy points (0.01 = one percentage point). */
    private Double maxAccuracyDrop;

    /** Lowest acceptable speedup against the baseline, measured in the same run. */
    private Double minSpeedup;

    /** Highest acceptable 95th percentile latency of one batch at {@code <batchSize>}, in milliseconds. */
    private Double maxLatencyP95Millis;

    /** Highest acceptable validation perplexity (language models). */
    private Double maxPerplexity;

    public Double getMaxPerplexity() {
        return maxPerplexity;
    }

    public void setMaxPerplexity(Double maxPerplexity) {
        this.maxPerplexity = maxPerplexity;
    }

    public String getVariant() {
        return variant;
    }

    public void setVariant(String variant) {
        this.variant = variant;
    }

    public Double getMinAccuracy() {
        return minAccuracy;
    }

    public void setMinAccuracy(Double minAccuracy) {
        this.minAccuracy = minAccuracy;
    }

    public Double getMaxAccuracyDrop() {
        return maxAccuracyDrop;
    }

    public void setMaxAccuracyDrop(Double maxAccuracyDrop) {
        this.maxAccuracyDrop = maxAccuracyDrop;
    }

    public Double getMinSpeedup() {
        return minSpeedup;
    }

    public void setMinSpeedup(Double minSpeedup) {
        this.minSpeedup = minSpeedup;
    }

    public Double getMaxLatencyP95Millis() {
        return maxLatencyP95Millis;
    }

    public void setMaxLatencyP95Millis(Double maxLatencyP95Millis) {
        this.maxLatencyP95Millis = maxLatencyP95Millis;
    }
}
