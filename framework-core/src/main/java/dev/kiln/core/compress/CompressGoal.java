package dev.kiln.core.compress;

import static dev.kiln.core.worker.GoalConfig.text;
import static dev.kiln.core.worker.GoalConfig.strings;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.bench.BenchmarkHarness;
import dev.kiln.core.bench.BenchmarkResult;
import dev.kiln.core.data.Checksums;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.Fingerprint;
import dev.kiln.core.worker.Goal;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.KilnVersion;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.compress.Compressor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.inject.Inject;

/**
 * The worker's {@code compress} goal: compresses a trained checkpoint with one compressor, writes the compressed
 * checkpoint and a JSON report beside it ({@code <stem>.report.json}), and with a {@code dataset} measures test
 * accuracy, samples/s and latency before and after on its test split in one {@link BenchmarkHarness} run (both
 * models interleaved, medians), through the zoo models rebuilt from the checkpoints' metadata.
 *
 * <p>Configuration: {@code checkpoint}, {@code compressor {id, params}}, {@code output}, optional {@code dataset},
 * {@code batchSize} (evaluation, default 256), {@code force}. The compressor id and parameters are validated through
 * the registry before any file is opened. The work is skipped when the output and report exist and the report's
 * fingerprint (configuration, checkpoint and data checksums, Kiln version) matches.
 */
public final class CompressGoal implements Goal {
    /** Logged when nothing changed; ITs count it. */
    public static final String UP_TO_DATE = "Compressed model is up to date, skipping compression";
    private static final String ORIGINAL = "original";
    private static final String COMPRESSED = "compressed";
    /** Timed passes over the test split per model; enough for a median on a build machine. */
    private static final int SPEED_REPEATS = 3;

    private final Registry registry;

    @Inject
    public CompressGoal(Registry registry) {
        this.registry = registry;
    }

    @Override
    public String name() {
        return "compress";
    }

    /** {@code model.safetensors} -> {@code model.report.json}. */
    public static Path reportPath(Path output) {
        String name = output.getFileName().toString();
        String stem = name.endsWith(".safetensors") ? name.substring(0, name.length() - ".safetensors".length())
                : name;
        return output.resolveSibling(stem + ".report.json");
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) throws IOException {
        JsonNode config = request.config();
        JsonNode compressorNode = config.get("compressor");
        String id = compressorNode == null ? null : text(compressorNode, "id");
        if (id == null) {
            throw new KilnException("compress: <compressor><id> is required (e.g. int8, magnitude; see kiln:list)");
        }
        Map<String, String> raw = strings(compressorNode.get("params"));
        Technique<?> technique = registry.find(Kind.COMPRESS, id);
        Parameters bound = Parameters.bind(technique, raw);
        Compressor compressor = registry.create(Kind.COMPRESS, Compressor.class, id, raw);

        String checkpointText = text(config, "checkpoint");
        String outputText = text(config, "output");
        if (checkpointText == null) {
            throw new KilnException("compress: <checkpoint> is required (the trained model.safetensors)");
        }
        if (outputText == null) {
            throw new KilnException("compress: <output> is required");
        }
        Path checkpoint = Path.of(checkpointText).toAbsolutePath();
        Path output = Path.of(outputText).toAbsolutePath();
        if (!Files.isRegularFile(checkpoint)) {
            throw new KilnException("compress: checkpoint " + checkpoint + " does not exist; run kiln:train first");
        }
        int batchSize = config.path("batchSize").asInt(256);
        if (batchSize < 1) {
            throw new KilnException("compress: batchSize must be at least 1, not " + batchSize);
        }
        String datasetText = text(config, "dataset");
        LabeledData data = null;
        if (datasetText != null) {
            DataSource source = Datasets.open(Path.of(datasetText));
            if (!(source instanceof LabeledData labeled) || labeled.test() == null) {
                throw new KilnException("compress: dataset " + datasetText + " has no labelled test split to measure"
                        + " accuracy on");
            }
            data = labeled;
        }
        Path report = reportPath(output);
        ObjectNode keyed = config.deepCopy();
        keyed.remove("batchSize"); // evaluation only: it does not change the compressed file
        String fingerprint = data == null ? Fingerprint.of(keyed, Checksums.sha256(checkpoint))
                : Fingerprint.of(keyed, Checksums.sha256(checkpoint), data.sha256());
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("output", output.toString());
        result.put("report", report.toString());
        if (!config.path("force").asBoolean(false) && Fingerprint.matches(output, report, fingerprint)) {
            events.emit(Event.info(UP_TO_DATE));
            JsonNode previous = Json.MAPPER.readTree(report.toFile());
            result.put("accuracyBefore", number(previous.get("accuracyBefore")));
            result.put("accuracyAfter", number(previous.get("accuracyAfter")));
            result.put("upToDate", true);
            return result;
        }
        events.emit(Event.info("Compressing " + checkpoint.getFileName() + " with " + id + bound.asMap()));
        Engine engine = EngineStarter.start(request.engineSettings());
        Double before = null;
        Double after = null;
        CompressPipeline pipeline = new CompressPipeline(id, bound.asMap(), compressor);
        List<String> pruned = CompressPipeline.defaultScope(id, checkpoint);
        if (pruned != null) {
            pipeline.restrictTo(pruned); // the pipeline need not read the header again
            events.emit(Event.info(id + ": pruning " + (pruned.isEmpty() ? "nothing" : String.join(", ", pruned))
                    + " (the layers that load narrower); the head and the residual path keep every output"));
        }
        CompressPipeline.Report outcome;
        Map<String, Object> speed = new LinkedHashMap<>();
        try (NDManager manager = engine.newBaseManager()) {
            outcome = pipeline.run(checkpoint, output, manager, Map.of("kiln.fingerprint", fingerprint,
                    "kiln.version", KilnVersion.get()));
            if (data != null) {
                // Quality and speed before and after in one benchmark run: both models on the same test split,
                // interleaved repeat by repeat, medians; the original is the baseline of the speedup.
                List<BenchmarkHarness.Variant> variants = List.of(BenchmarkHarness.Variant.plain(ORIGINAL),
                        new BenchmarkHarness.Variant(COMPRESSED, null, Map.of(), output));
                BenchmarkResult bench = new BenchmarkHarness(registry, line -> events.emit(Event.info(line)))
                        .run(checkpoint, data.test(), variants, new BenchmarkHarness.Settings(batchSize, 1,
                                SPEED_REPEATS, 8, 0, 42), manager);
                BenchmarkResult.VariantResult o = bench.variant(ORIGINAL);
                BenchmarkResult.VariantResult c = bench.variant(COMPRESSED);
                before = o.accuracy();
                after = c.accuracy();
                speed.put("samplesPerSecondBefore", o.samplesPerSecond());
                speed.put("samplesPerSecondAfter", c.samplesPerSecond());
                speed.put("speedup", c.speedup());
                speed.put("latencyP50MillisBefore", o.latencyP50Millis());
                speed.put("latencyP50MillisAfter", c.latencyP50Millis());
                speed.put("benchmark", Map.of("batchSize", batchSize, "warmup", 1, "repeats", SPEED_REPEATS,
                        "samples", bench.samples(), "device", bench.device()));
            }
        }
        Map<String, Object> extra = new LinkedHashMap<>();
        extra.put("kilnVersion", KilnVersion.get());
        extra.put("fingerprint", fingerprint);
        extra.put("accuracyBefore", before);
        extra.put("accuracyAfter", after);
        extra.putAll(speed);
        extra.put("dataset", datasetText);
        pipeline.writeReport(report, outcome, extra);
        events.emit(Event.info(String.format(Locale.ROOT, "Compressed %d tensors (%d copied): %d -> %d bytes (%.2fx)"
                + "%s", outcome.tensors().size(), outcome.copied().size(), outcome.bytesBefore(),
                outcome.bytesAfter(), outcome.ratio(), before == null ? ""
                        : String.format(Locale.ROOT, "; test accuracy %.4f -> %.4f; %.0f -> %.0f samples/s (%.2fx)",
                                before, after, (Double) speed.get("samplesPerSecondBefore"),
                                (Double) speed.get("samplesPerSecondAfter"), (Double) speed.get("speedup")))));
        events.emit(Event.info("Compressed model: " + output));
        events.emit(Event.info("Compression report: " + report));
        result.put("accuracyBefore", before);
        result.put("accuracyAfter", after);
        result.putAll(speed);
        result.put("bytesBefore", outcome.bytesBefore());
        result.put("bytesAfter", outcome.bytesAfter());
        result.put("upToDate", false);
        return result;
    }

    private static Double number(JsonNode node) {
        return node == null || node.isNull() ? null : node.asDouble();
    }
}
