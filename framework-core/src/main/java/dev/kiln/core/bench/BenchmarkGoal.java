package dev.kiln.core.bench;

import static dev.kiln.core.worker.GoalConfig.text;
import static dev.kiln.core.worker.GoalConfig.required;
import static dev.kiln.core.worker.GoalConfig.strings;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.data.TextCorpus;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.Goal;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Registry;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.inject.Inject;

/**
 * The {@code benchmark} worker goal: measures a classifier checkpoint and its variants on a dataset's test split,
 * writes the reports, then checks the gates and fails (a user error, so the build fails) when any is missed. The
 * reports are always written first, so a failed build still shows what was measured.
 *
 * <p>Configuration: {@code checkpoint}, {@code dataset}, {@code batchSize}, {@code warmup}, {@code repeats},
 * {@code latencySamples}, {@code limit}, {@code seed}, {@code reportDir}, {@code variants} (a list of
 * {@code {name, skip: {id, params}, checkpoint}}) and {@code gates} (a list of
 * {@code {variant, minAccuracy, maxAccuracyDrop, minSpeedup, maxLatencyP95Millis}}, variant absent for all).
 */
public final class BenchmarkGoal implements Goal {
    private final Registry registry;

    @Inject
    BenchmarkGoal(Registry registry) {
        this.registry = registry;
    }

    @Override
    public String name() {
        return "benchmark";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) {
        JsonNode config = request.config();
        Path checkpoint = Path.of(required(config, "checkpoint", "benchmark")).toAbsolutePath();
        Path dataset = Path.of(required(config, "dataset", "benchmark")).toAbsolutePath();
        Path reportDir = Path.of(required(config, "reportDir", "benchmark")).toAbsolutePath();
        BenchmarkHarness.Settings settings = new BenchmarkHarness.Settings(config.path("batchSize").asInt(64),
                config.path("warmup").asInt(3), config.path("repeats").asInt(3),
                config.path("latencySamples").asInt(32), config.path("limit").asInt(0),
                config.path("seed").asLong(42));
        List<BenchmarkHarness.Variant> variants = variants(config.get("variants"));
        List<Gates.Gate> gates = gates(config.get("gates"));
        // A gate naming a misspelt variant fails now, not after minutes of measuring.
        Gates.validate(gates, BenchmarkHarness.variantNames(variants));

        DataSource source = Datasets.open(dataset);
        Engine engine;
        BenchmarkResult result;
        if (source instanceof TextCorpus corpus) {
            LanguageModelHarness.LmSettings lm = new LanguageModelHarness.LmSettings(
                    config.path("promptLength").asInt(64), config.path("newTokens").asInt(64),
                    config.path("perplexityWindows").asInt(32));
            events.emit(Event.info(String.format(Locale.ROOT, "Benchmarking language model %s on the validation"
                    + " text of %s: %d variant(s), batch sizes 1 and %d, prompts of %d bytes, %d new tokens, %d timed"
                    + " repeats", checkpoint, dataset, BenchmarkHarness.variantNames(variants).size(),
                    settings.batchSize(), lm.promptLength(), lm.newTokens(), settings.repeats())));
            engine = EngineStarter.start(request.engineSettings());
            try (NDManager manager = engine.newBaseManager()) {
                result = new LanguageModelHarness(registry, line -> events.emit(Event.info(line))).run(checkpoint,
                        corpus, variants, settings, lm, manager);
            }
        } else {
            LabeledData data = (LabeledData) source;
            if (data.test() == null || data.test().size() == 0) {
                throw new KilnException("dataset " + dataset + " has no test split to benchmark on");
            }
            events.emit(Event.info(String.format(Locale.ROOT, "Benchmarking %s on %d test samples of %s: %d"
                    + " variant(s), batch size %d, %d warm-up batches, %d timed passes", checkpoint,
                    settings.limit() > 0 ? Math.min(settings.limit(), data.test().size()) : data.test().size(),
                    dataset, BenchmarkHarness.variantNames(variants).size(), settings.batchSize(), settings.warmup(),
                    settings.repeats())));
            engine = EngineStarter.start(request.engineSettings());
            try (NDManager manager = engine.newBaseManager()) {
                result = new BenchmarkHarness(registry, line -> events.emit(Event.info(line))).run(checkpoint,
                        data.test(), variants, settings, manager);
            }
        }
        List<Gates.Check> checks = Gates.evaluate(gates, result);
        List<Path> files = BenchmarkReport.write(reportDir, result, checks);
        for (BenchmarkResult.VariantResult v : result.variants()) {
            events.emit(Event.info(String.format(Locale.ROOT, "%-12s %s %.4f  speedup %.2fx  %.0f %s/s"
                    + "  p95 %.2f ms (batch %d)  p95 %.2f ms (batch 1)", v.name(),
                    result.languageModel() ? "perplexity" : "accuracy", v.quality(), v.speedup(),
                    v.samplesPerSecond(), result.languageModel() ? "tokens" : "samples", v.latencyP95Millis(),
                    settings.batchSize(), v.latency1P95Millis())));
        }
        for (Gates.Check check : checks) {
            events.emit(check.passed() ? Event.info(check.message()) : Event.warn(check.message()));
        }
        events.emit(Event.info("Benchmark report: " + files.get(2)));
        List<Gates.Check> misses = Gates.misses(checks);
        if (!misses.isEmpty()) {
            throw Gates.failure(misses, files.get(1).toString());
        }
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("reportJson", files.get(0).toString());
        summary.put("reportMarkdown", files.get(1).toString());
        summary.put("reportHtml", files.get(2).toString());
        summary.put("gatesChecked", checks.size());
        Map<String, Object> accuracy = new LinkedHashMap<>();
        Map<String, Object> speedup = new LinkedHashMap<>();
        for (BenchmarkResult.VariantResult v : result.variants()) {
            accuracy.put(v.name(), v.quality());
            speedup.put(v.name(), v.speedup());
        }
        summary.put(result.languageModel() ? "perplexity" : "accuracy", accuracy);
        summary.put("speedup", speedup);
        return summary;
    }

    static List<BenchmarkHarness.Variant> variants(JsonNode node) {
        List<BenchmarkHarness.Variant> out = new ArrayList<>();
        if (node == null || !node.isArray()) {
            return out;
        }
        for (JsonNode v : node) {
            String name = text(v, "name");
            if (name == null) {
                throw new KilnException("benchmark: every <variant> needs a <name>");
            }
            JsonNode skip = v.get("skip");
            String skipId = skip == null || skip.isNull() ? null : text(skip, "id");
            if (skip != null && !skip.isNull() && skipId == null) {
                throw new KilnException("benchmark: variant '" + name + "' has a <skip> without an <id>");
            }
            String other = text(v, "checkpoint");
            out.add(new BenchmarkHarness.Variant(name, skipId, skip == null ? Map.of() : strings(skip.get("params")),
                    other == null ? null : Path.of(other).toAbsolutePath()));
        }
        return out;
    }

    static List<Gates.Gate> gates(JsonNode node) {
        List<Gates.Gate> out = new ArrayList<>();
        if (node == null || !node.isArray()) {
            return out;
        }
        for (JsonNode g : node) {
            out.add(new Gates.Gate(text(g, "variant"), number(g, "minAccuracy"), number(g, "maxAccuracyDrop"),
                    number(g, "minSpeedup"), number(g, "maxLatencyP95Millis"), number(g, "maxPerplexity")));
        }
        return out;
    }

    private static Double number(JsonNode node, String field) {
        JsonNode value = node.get(field);
        if (value == null || value.isNull()) {
            return null;
        }
        if (value.isNumber()) {
            return value.asDouble();
        }
        try {
            return Double.parseDouble(value.asText().trim());
        } catch (NumberFormatException e) {
            throw new KilnException("gate " + field + " is '" + value.asText() + "'; a number is needed");
        }
    }
}
