package dev.kiln.core.bench;

import java.util.List;
import java.util.Map;

/**
 * Everything one benchmark run measured, in the units the reports show.
 *
 * @param checkpoint the baseline checkpoint
 * @param model the zoo id of the baseline model
 * @param modelParameters its bound parameters
 * @param dataset where the test data came from
 * @param samples test samples each pass classified
 * @param settings how it was measured
 * @param device the device the models ran on
 * @param engine engine name and version
 * @param cores processors the JVM saw
 * @param rssPerVariant whether peak RSS could be reset per variant (Linux) or is the process's peak so far
 * @param variants the variants, baseline first
 */
public record BenchmarkResult(String checkpoint, String model, Map<String, Object> modelParameters, String dataset,
        int samples, BenchmarkHarness.Settings settings, String device, String engine, int cores,
        boolean rssPerVariant, List<VariantResult> variants) {

    /** The variant named {@code name}, or null. */
    public VariantResult variant(String name) {
        return variants.stream().filter(v -> v.name().equals(name)).findFirst().orElse(null);
    }

    /** Whether these are language-model results (quality is perplexity, lower is better). */
    public boolean languageModel() {
        return variants.stream().anyMatch(v -> !Double.isNaN(v.perplexity()));
    }

    /** The variant speedups are measured against. */
    public VariantResult baseline() {
        return variants.stream().filter(VariantResult::baseline).findFirst().orElseThrow();
    }

    /**
     * One variant's numbers.
     *
     * @param name the variant's name
     * @param baseline whether this is the baseline
     * @param checkpoint the checkpoint it ran
     * @param skipId its skip policy, or null
     * @param skipParams the skip policy's parameters as given
     * @param accuracy top-1 accuracy on the test samples
     * @param blocks residual blocks in the model (0 for models without any)
     * @param blocksRun mean residual blocks that ran per batch
     * @param medianPassSeconds median seconds for one pass over the test samples
     * @param samplesPerSecond test samples / median pass seconds
     * @param speedup baseline median pass seconds / this variant's, measured in the same run
     * @param latencyP50Millis median per-batch latency at the stated batch size
     * @param latencyP95Millis 95th percentile per-batch latency at the stated batch size
     * @param latency1P50Millis median latency of one sample (batch size 1)
     * @param latency1P95Millis 95th percentile latency of one sample
     * @param heapPeakBytes peak JVM heap during the variant's accuracy pass
     * @param rssPeakBytes peak resident set size (VmHWM), or -1 where unavailable
     * @param rssPerVariant whether {@code rssPeakBytes} covers this variant alone
     * @param passSeconds every timed pass, in order
     * @param perplexity validation perplexity of a language model (NaN for classifiers)
     * @param extra further measurements of the model kind (for language models: prefill and decode tokens/s per
     *     batch size)
     */
    public record VariantResult(String name, boolean baseline, String checkpoint, String skipId,
            Map<String, String> skipParams, double accuracy, int blocks, double blocksRun, double medianPassSeconds,
            double samplesPerSecond, double speedup, double latencyP50Millis, double latencyP95Millis,
            double latency1P50Millis, double latency1P95Millis, long heapPeakBytes, long rssPeakBytes,
            boolean rssPerVariant, List<Double> passSeconds, double perplexity, Map<String, Object> extra) {

        /** A classifier's result: no perplexity, no extra measurements. */
        public VariantResult(String name, boolean baseline, String checkpoint, String skipId,
                Map<String, String> skipParams, double accuracy, int blocks, double blocksRun,
                double medianPassSeconds, double samplesPerSecond, double speedup, double latencyP50Millis,
                double latencyP95Millis, double latency1P50Millis, double latency1P95Millis, long heapPeakBytes,
                long rssPeakBytes, boolean rssPerVariant, List<Double> passSeconds) {
            this(name, baseline, checkpoint, skipId, skipParams, accuracy, blocks, blocksRun, medianPassSeconds,
                    samplesPerSecond, speedup, latencyP50Millis, latencyP95Millis, latency1P50Millis,
                    latency1P95Millis, heapPeakBytes, rssPeakBytes, rssPerVariant, passSeconds, Double.NaN,
                    Map.of());
        }

        /** The quality the reports plot: accuracy for classifiers, perplexity for language models. */
        public double quality() {
            return Double.isNaN(accuracy) ? perplexity : accuracy;
        }

        /** Blocks / blocks run: the speedup the skipped fraction promises, before overheads (1 without skips). */
        public double theoreticalSpeedup() {
            return blocks == 0 || blocksRun <= 0 ? 1.0 : blocks / blocksRun;
        }
    }
}
