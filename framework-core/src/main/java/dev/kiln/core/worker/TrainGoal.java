package dev.kiln.core.worker;

import static dev.kiln.core.worker.GoalConfig.text;
import static dev.kiln.core.worker.GoalConfig.required;
import static dev.kiln.core.worker.GoalConfig.strings;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingListener;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.augment.Augmentation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.inject.Inject;

/**
 * Trains a zoo model on a dataset with the configured augmentations; writes the checkpoint and a model card, or skips
 * the work when both exist and were made from the same configuration, data and Kiln version.
 */
public final class TrainGoal implements Goal {
    /** Logged when nothing changed; ITs count it. */
    public static final String UP_TO_DATE = "Model is up to date, skipping training";
    private static final long PROGRESS_INTERVAL_NANOS = 2_000_000_000L;

    private final Registry registry;

    @Inject
    TrainGoal(Registry registry) {
        this.registry = registry;
    }

    @Override
    public String name() {
        return "train";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) throws IOException {
        JsonNode config = request.config();
        String model = text(config, "model", "cnn");
        if (model.equals(LanguageModelTraining.MODEL_ID)) {
            return LanguageModelTraining.run(request, events, registry);
        }
        if (!ModelZoo.ids().contains(model)) {
            throw new KilnException("unknown model '" + model + "'; the zoo has: " + String.join(", ", ModelZoo.ids())
                    + ", " + LanguageModelTraining.MODEL_ID);
        }
        Path dataset = Path.of(required(config, "dataset", "train"));
        Path output = Path.of(required(config, "output", "train")).toAbsolutePath();
        Path card = cardPath(output);

        // Every technique id and parameter is checked before the data is even opened.
        List<Augmentation> augmentations = new ArrayList<>();
        List<Map<String, Object>> techniqueRecords = new ArrayList<>();
        for (JsonNode entry : iterable(config.get("augment"))) {
            String id = required(entry, "id", "train");
            Map<String, String> raw = strings(entry.get("params"));
            Technique<?> technique = registry.find(Kind.AUGMENT, id);
            Parameters bound = Parameters.bind(technique, raw);
            augmentations.add(registry.create(Kind.AUGMENT, Augmentation.class, id, raw));
            Map<String, Object> record = new LinkedHashMap<>();
            record.put("id", id);
            record.put("params", bound.asMap());
            record.put("from", registry.origin(technique));
            techniqueRecords.add(record);
        }
        TrainingConfig trainingConfig = TrainingConfig.builder(model)
                .modelParameters(strings(config.get("modelParams")))
                .epochs(config.path("epochs").asInt(10))
                .batchSize(config.path("batchSize").asInt(64))
                .optimizer(text(config, "optimizer", "sgd"))
                .learningRate(config.path("learningRate").asDouble(0.05))
                .warmupSteps(config.path("warmupSteps").asInt(0))
                .momentum(config.path("momentum").asDouble(0.9))
                .weightDecay(config.path("weightDecay").asDouble(5e-4))
                .seed(config.path("seed").asLong(42))
                .loss(text(config, "loss", "cross-entropy"))
                .bceThreshold(config.path("bceThreshold").asDouble(-1))
                .threads(request.threads())
                .augmentations(augmentations)
                .checkpointDir(output.resolveSibling(output.getFileName() + ".work"))
                .resume(config.path("resume").asBoolean(false))
                .build();

        DataSource source = Datasets.open(dataset);
        if (!(source instanceof LabeledData)) {
            throw new KilnException("dataset " + dataset + " is a text corpus; the train goal's zoo models need"
                    + " labelled images (an IDX folder, an image folder or a CSV file)");
        }
        LabeledData data = (LabeledData) source;
        String fingerprint = Fingerprint.of(config, data.sha256());
        if (!config.path("force").asBoolean(false) && Fingerprint.matches(output, card, fingerprint)) {
            return upToDateResult(output, card, events);
        }
        events.emit(Event.info(String.format(Locale.ROOT, "Training %s on %s (%d train / %d test samples, %d classes)"
                + " for %d epochs%s", model, dataset, data.train().size(), data.test() == null ? 0
                        : data.test().size(), data.train().numClasses(), trainingConfig.epochs(),
                techniqueRecords.isEmpty() ? "" : " with " + techniqueRecords.stream().map(r -> (String) r.get("id"))
                        .reduce((a, b) -> a + ", " + b).orElse(""))));

        Engine engine = EngineStarter.start(request.engineSettings());
        TrainingResult result;
        try (NDManager manager = engine.newBaseManager()) {
            TrainingRun run = new TrainingRun(trainingConfig, data.train(), data.test(), new ProgressReporter(
                    events));
            result = run.run(manager);
            Map<String, String> metadata = new LinkedHashMap<>(result.metadata());
            metadata.put("kiln.version", KilnVersion.get());
            metadata.put("kiln.fingerprint", fingerprint);
            Files.createDirectories(output.getParent());
            TrainingRun.saveModel(result.model(), metadata, output);
            writeCard(card, config, data, techniqueRecords, result, fingerprint);
        }
        events.emit(Event.info("Model: " + output));
        events.emit(Event.info("Model card: " + card));
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("output", output.toString());
        summary.put("modelCard", card.toString());
        summary.put("testAccuracy", result.finalAccuracy());
        return summary;
    }

    /** {@code model.safetensors} -> {@code model.card.json}. */
    public static Path cardPath(Path checkpoint) {
        String name = checkpoint.getFileName().toString();
        String stem = name.endsWith(".safetensors") ? name.substring(0, name.length() - ".safetensors".length()) : name;
        return checkpoint.resolveSibling(stem + ".card.json");
    }

    /** What a skipped run reports: the fixed log line, and the existing checkpoint and card as its outputs. */
    static Map<String, Object> upToDateResult(Path output, Path card, EventSink events) {
        events.emit(Event.info(UP_TO_DATE));
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("output", output.toString());
        result.put("modelCard", card.toString());
        result.put("upToDate", true);
        return result;
    }

    private static void writeCard(Path card, JsonNode config, LabeledData data, List<Map<String, Object>> techniques,
            TrainingResult result, String fingerprint) throws IOException {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("kilnVersion", KilnVersion.get());
        doc.put("created", Instant.now().toString());
        doc.put("fingerprint", fingerprint);
        Map<String, Object> modelInfo = new LinkedHashMap<>();
        modelInfo.put("id", result.model().id());
        modelInfo.put("params", result.model().modelParameters().asMap());
        modelInfo.put("parameterCount", result.model().parameterCount());
        doc.put("model", modelInfo);
        Map<String, Object> dataInfo = new LinkedHashMap<>();
        dataInfo.put("path", config.path("dataset").asText());
        dataInfo.put("format", data.format());
        dataInfo.put("sha256", data.sha256());
        dataInfo.put("trainSamples", data.train().size());
        dataInfo.put("testSamples", data.test() == null ? 0 : data.test().size());
        dataInfo.put("classes", data.train().classNames());
        doc.put("dataset", dataInfo);
        doc.put("augment", techniques);
        doc.put("training", Json.MAPPER.treeToValue(config, Map.class));
        doc.put("seed", config.path("seed").asLong(42));
        List<Map<String, Object>> epochs = new ArrayList<>();
        for (TrainingListener.EpochResult epoch : result.history()) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("epoch", epoch.epoch() + 1);
            row.put("trainLoss", finite(epoch.trainLoss()));
            row.put("trainAccuracy", finite(epoch.trainAccuracy()));
            row.put("testLoss", finite(epoch.evalLoss()));
            row.put("testAccuracy", finite(epoch.evalAccuracy()));
            row.put("seconds", epoch.seconds());
            epochs.add(row);
        }
        doc.put("epochs", epochs);
        doc.put("testAccuracy", finite(result.finalAccuracy()));
        doc.put("metadata", result.metadata());
        AtomicFiles.writeString(card, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(doc));
    }

    private static Object finite(double value) {
        return Double.isFinite(value) ? value : null;
    }

    private static Iterable<JsonNode> iterable(JsonNode node) {
        return node == null || !node.isArray() ? List.of() : node;
    }

    /** Turns training callbacks into progress events: one per epoch, and one every two seconds in between. */
    private static final class ProgressReporter implements TrainingListener {
        private final EventSink events;
        private long lastReport = System.nanoTime();

        ProgressReporter(EventSink events) {
            this.events = events;
        }

        @Override
        public void onStep(StepProgress p) {
            long now = System.nanoTime();
            if (now - lastReport < PROGRESS_INTERVAL_NANOS) {
                return;
            }
            lastReport = now;
            Map<String, Object> data = new LinkedHashMap<>();
            data.put("epoch", p.epoch() + 1);
            data.put("step", p.step() + 1);
            data.put("loss", p.loss());
            data.put("samplesPerSecond", p.samplesPerSecond());
            data.put("etaSeconds", p.etaSeconds());
            events.emit(Event.progress(String.format(Locale.ROOT,
                    "epoch %d/%d  step %d/%d  loss %.4f  acc %.3f  lr %.4g  %.0f samples/s  ETA %s", p.epoch() + 1,
                    p.epochs(), p.step() + 1, p.totalSteps(), p.loss(), p.accuracy(), p.learningRate(),
                    p.samplesPerSecond(), duration(p.etaSeconds())), data));
        }

        @Override
        public void onEpoch(EpochResult r) {
            lastReport = System.nanoTime();
            events.emit(Event.progress(String.format(Locale.ROOT,
                    "epoch %d: train loss %.4f acc %.3f | test loss %.4f accuracy %.4f | %.1f s", r.epoch() + 1,
                    r.trainLoss(), r.trainAccuracy(), r.evalLoss(), r.evalAccuracy(), r.seconds()),
                    Map.of("epoch", r.epoch() + 1, "testAccuracy", r.evalAccuracy())));
        }

        private static String duration(double seconds) {
            long s = Math.round(seconds);
            return s >= 60 ? (s / 60) + "m" + String.format(Locale.ROOT, "%02d", s % 60) + "s" : s + "s";
        }
    }
}
