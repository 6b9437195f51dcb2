package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugins.annotations.LifecyclePhase;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Benchmarks a classifier checkpoint and its variants (skip policies, other checkpoints) on the dataset's test
 * split: accuracy, measured speedup against the baseline, throughput, latency at the batch size and at batch size 1,
 * and peak memory. Writes {@code report.json}, {@code report.md} and {@code report.html} (with a chart of accuracy
 * against speedup), then fails the build when a gate is missed, listing every miss.
 */
@Mojo(name = "benchmark", defaultPhase = LifecyclePhase.VERIFY, threadSafe = true)
public class BenchmarkMojo extends AbstractKilnMojo {

    /** The classifier checkpoint written by {@code kiln:train}; model, classes and normalisation come from it. */
    @Parameter(property = "kiln.checkpoint", defaultValue = "${project.build.directory}/kiln/model.safetensors")
    private File checkpoint;

    /** The labelled data whose test split is measured (IDX folder, image folder or CSV), as given to training. */
    @Parameter(property = "kiln.dataset", required = true)
    private File dataset;

    /** Samples per batch for accuracy, throughput and batch latency. */
    @Parameter(property = "kiln.batchSize", defaultValue = "64")
    private int batchSize;

    /** Untimed batches per variant (at the batch size and at batch size 1) before timing starts. */
    @Parameter(property = "kiln.warmup", defaultValue = "3")
    private int warmup;

    /** Timed passes over the test split per variant; the report gives medians over these. */
    @Parameter(property = "kiln.repeats", defaultValue = "3")
    private int repeats;

    /** Single samples timed per repeat for the batch-size-1 latency. */
    @Parameter(property = "kiln.latencySamples", defaultValue = "32")
    private int latencySamples;

    /** Use at most this many test samples (0: the whole test split). */
    @Parameter(property = "kiln.limit", defaultValue = "0")
    private int limit;

    /** Seeds stochastic skip policies. */
    @Parameter(property = "kiln.seed", defaultValue = "42")
    private long seed;

    /**
     * What to measure. The first variant with neither {@code <skip>} nor {@code <checkpoint>} is the baseline;
     * when there is none, a variant named {@code baseline} is added.
     */
    @Parameter
    private List<VariantConfig> variants;

    /** Quality and speed bars; a miss fails the build after the report is written. */
    @Parameter
    private GatesConfig gates;

    /** Where {@code report.json}, {@code report.md} and {@code report.html} are written. */
    @Parameter(property = "kiln.reportDir", defaultValue = "${project.build.directory}/kiln/benchmark")
    private File reportDir;

    /** Language models: bytes of validation text in each generation prompt. */
    @Parameter(property = "kiln.promptLength", defaultValue = "64")
    private int promptLength;

    /** Language models: tokens generated per prompt; decode speed is measured over them. */
    @Parameter(property = "kiln.newTokens", defaultValue = "64")
    private int newTokens;

    /** Language models: validation windows for perplexity (0: the whole validation text). */
    @Parameter(property = "kiln.perplexityWindows", defaultValue = "32")
    private int perplexityWindows;

    @Override
    protected String workerGoal() {
        return "benchmark";
    }

    @Override
    protected ObjectNode configuration() throws MojoFailureException {
        if (dataset == null) {
            throw new MojoFailureException("<dataset> is required: the labelled data the classifier was trained on,"
                    + " or the text file of a decoder-lm");
        }
        if (checkpoint == null) {
            throw new MojoFailureException("<checkpoint> is required: a model written by kiln:train");
        }
        ObjectNode config = newConfiguration();
        config.put("checkpoint", checkpoint.getAbsolutePath());
        config.put("dataset", dataset.getAbsolutePath());
        config.put("batchSize", batchSize);
        config.put("warmup", warmup);
        config.put("repeats", repeats);
        config.put("latencySamples", latencySamples);
        config.put("limit", limit);
        config.put("seed", seed);
        config.put("promptLength", promptLength);
        config.put("newTokens", newTokens);
        config.put("perplexityWindows", perplexityWindows);
        config.put("reportDir", reportDir.getAbsolutePath());
        ArrayNode variantNodes = config.putArray("variants");
        Set<String> names = new HashSet<>();
        for (VariantConfig v : variants == null ? List.<VariantConfig>of() : variants) {
            if (v.getName() == null || v.getName().isBlank()) {
                throw new MojoFailureException("every <variants><variant> needs a <name>");
            }
            if (!names.add(v.getName().trim())) {
                throw new MojoFailureException("two <variant>s are named '" + v.getName().trim() + "'");
            }
            ObjectNode node = variantNodes.addObject();
            node.put("name", v.getName().trim());
            if (v.getSkip() != null) {
                if (v.getSkip().getId() == null || v.getSkip().getId().isBlank()) {
                    throw new MojoFailureException("the <skip> of variant '" + v.getName().trim()
                            + "' needs an <id>; see mvn kiln:list");
                }
                ObjectNode skip = node.putObject("skip");
                skip.put("id", v.getSkip().getId().trim());
                ObjectNode params = skip.putObject("params");
                v.getSkip().getParams().forEach(params::put);
            }
            if (v.getCheckpoint() != null) {
                node.put("checkpoint", v.getCheckpoint().getAbsolutePath());
            }
        }
        ArrayNode gateNodes = config.putArray("gates");
        if (gates != null) {
            if (gates.getVariant() != null) {
                throw new MojoFailureException("<gates> applies to every variant; put <variant> inside a <gate>");
            }
            gate(gateNodes, gates, null);
            for (GateConfig g : gates.perVariant()) {
                if (g.getVariant() == null || g.getVariant().isBlank()) {
                    throw new MojoFailureException("every <gates><gate> needs a <variant>; bars for all variants go"
                            + " directly inside <gates>");
                }
                gate(gateNodes, g, g.getVariant().trim());
            }
        }
        return config;
    }

    private static void gate(ArrayNode nodes, GateConfig g, String variant) {
        if (g.getMinAccuracy() == null && g.getMaxAccuracyDrop() == null && g.getMinSpeedup() == null
                && g.getMaxLatencyP95Millis() == null && g.getMaxPerplexity() == null) {
            return;
        }
        ObjectNode node = nodes.addObject();
        if (variant != null) {
            node.put("variant", variant);
        }
        put(node, "minAccuracy", g.getMinAccuracy());
        put(node, "maxAccuracyDrop", g.getMaxAccuracyDrop());
        put(node, "minSpeedup", g.getMinSpeedup());
        put(node, "maxLatencyP95Millis", g.getMaxLatencyP95Millis());
        put(node, "maxPerplexity", g.getMaxPerplexity());
    }

    private static void put(ObjectNode node, String field, Double value) {
        if (value != null) {
            node.put(field, value);
        }
    }

    @Override
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
        Object html = result.get("reportHtml");
        if (html != null) {
            getLog().info("Benchmark gates passed; report: " + html);
        }
    }
}
