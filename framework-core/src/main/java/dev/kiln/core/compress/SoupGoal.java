package dev.kiln.core.compress;

import static dev.kiln.core.worker.GoalConfig.strings;
import static dev.kiln.core.worker.GoalConfig.text;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.data.Checksums;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.model.CheckpointModels;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.train.TrainingConfig;
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
import dev.kiln.spi.augment.Augmentation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.inject.Inject;

/**
 * The worker's {@code soup} goal: a {@linkplain SparseSoup sparse model soup} from a trained checkpoint. Prunes it by
 * magnitude, fine-tunes {@code ingredients} copies under the shared mask (each with its own seed, and with
 * {@code augmentPerIngredient} each with its own augmentation), averages them, and repeats for {@code rounds}
 * rounds up to the target {@code sparsity}. Writes the soup as an ordinary (model-v1) checkpoint and a JSON report
 * beside it ({@code <stem>.report.json}) with every round's ingredient and soup accuracies and the sparsity counted
 * on the written tensors, mask by mask.
 *
 * <p>Configuration: {@code checkpoint}, {@code dataset} (its training split fine-tunes, its test split, when it has
 * one, evaluates), {@code output}, {@code sparsity}, {@code global}, {@code ingredients}, {@code rounds},
 * {@code augmentPerIngredient}, and the fine-tuning settings of one ingredient as in {@code train}: {@code epochs},
 * {@code batchSize}, {@code optimizer}, {@code learningRate}, {@code warmupSteps}, {@code momentum},
 * {@code weightDecay}, {@code seed}, {@code loss}, {@code bceThreshold}, {@code augment}. Everything is validated
 * before the data is opened. The work is skipped when the output and report exist with a matching fingerprint.
 */
public final class SoupGoal implements Goal {
    /** Logged when nothing changed; ITs count it. */
    public static final String UP_TO_DATE = "Sparse soup is up to date, skipping it";

    private final Registry registry;

    @Inject
    public SoupGoal(Registry registry) {
        this.registry = registry;
    }

    @Override
    public String name() {
        return "soup";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) throws IOException {
        JsonNode config = request.config();
        String checkpointText = text(config, "checkpoint");
        String outputText = text(config, "output");
        String datasetText = text(config, "dataset");
        if (checkpointText == null) {
            throw new KilnException("soup: <checkpoint> is required (the trained model.safetensors to prune)");
        }
        if (outputText == null) {
            throw new KilnException("soup: <output> is required");
        }
        if (datasetText == null) {
            throw new KilnException("soup: <dataset> is required: the ingredients are fine-tuned on its training"
                    + " split");
        }
        Path checkpoint = Path.of(checkpointText).toAbsolutePath();
        Path output = Path.of(outputText).toAbsolutePath();
        if (!Files.isRegularFile(checkpoint)) {
            throw new KilnException("soup: checkpoint " + checkpoint + " does not exist; run kiln:train first");
        }
        if (checkpoint.normalize().equals(output.normalize())) {
            throw new KilnException("soup: output " + output + " is the input checkpoint; choose another path");
        }
        Map<String, String> meta;
        try (SafetensorsReader reader = SafetensorsReader.open(checkpoint)) {
            meta = reader.metadata() == null ? Map.of() : new LinkedHashMap<>(reader.metadata());
        }
        String format = meta.getOrDefault("kiln.format", "");
        if (!format.equals("model-v1") && !format.equals("checkpoint-v1")) {
            throw new KilnException("soup: checkpoint " + checkpoint + " has kiln.format '" + format + "'; a soup"
                    + " starts from a trained full-size model (model-v1 or checkpoint-v1, as kiln:train writes),"
                    + " not from a compressed one");
        }
        String model = meta.get("kiln.model");
        if (model == null || !ModelZoo.ids().contains(model)) {
            throw new KilnException("soup: checkpoint " + checkpoint + " holds model '" + model + "'; soups are"
                    + " made of zoo classifiers (" + String.join(", ", ModelZoo.ids()) + ")");
        }

        // Every setting and technique is checked before any data is read or any model is trained.
        List<Augmentation> augmentations = new ArrayList<>();
        List<Map<String, Object>> techniqueRecords = new ArrayList<>();
        JsonNode augment = config.get("augment");
        for (JsonNode entry : augment == null || !augment.isArray() ? List.<JsonNode>of() : augment) {
            String id = text(entry, "id");
            if (id == null) {
                throw new KilnException("soup: every <augment><technique> needs an <id>; see kiln:list");
            }
            Map<String, String> raw = strings(entry.get("params"));
            Technique<?> technique = registry.find(Kind.AUGMENT, id);
            Parameters bound = Parameters.bind(technique, raw);
            augmentations.add(registry.create(Kind.AUGMENT, Augmentation.class, id, raw));
            techniqueRecords.add(Map.of("id", id, "params", bound.asMap()));
        }
        boolean perIngredient = config.path("augmentPerIngredient").asBoolean(false);
        if (perIngredient && augmentations.isEmpty()) {
            throw new KilnException("soup: augmentPerIngredient needs at least one <augment><technique>");
        }
        Map<String, String> modelParams = CheckpointModels.modelParameters(checkpoint, meta);
        TrainingConfig fineTune = TrainingConfig.builder(model)
                .modelParameters(modelParams)
                .epochs(config.path("epochs").asInt(1))
                .batchSize(config.path("batchSize").asInt(64))
                .optimizer(text(config, "optimizer", "sgd"))
                .learningRate(config.path("learningRate").asDouble(0.01))
                .warmupSteps(config.path("warmupSteps").asInt(0))
                .momentum(config.path("momentum").asDouble(0.9))
                .weightDecay(config.path("weightDecay").asDouble(5e-4))
                .seed(config.path("seed").asLong(42))
                .loss(text(config, "loss", "cross-entropy"))
                .bceThreshold(config.path("bceThreshold").asDouble(-1))
                .threads(request.threads())
                .normalize(!"none".equals(meta.getOrDefault("kiln.normalization", "none")))
                .augmentations(augmentations)
                .build();
        if (!config.path("sparsity").isNumber() && text(config, "sparsity") == null) {
            throw new KilnException("soup: <sparsity> is required: the fraction of prunable weights to zero, in"
                    + " [0, 1)");
        }
        List<List<Augmentation>> perIngredientAugmentations = new ArrayList<>();
        if (perIngredient) {
            augmentations.forEach(a -> perIngredientAugmentations.add(List.of(a)));
        }
        SparseSoup.Settings settings = new SparseSoup.Settings(config.path("sparsity").asDouble(Double.NaN),
                config.path("global").asBoolean(false), config.path("ingredients").asInt(3),
                config.path("rounds").asInt(1), fineTune, perIngredientAugmentations);

        DataSource source = Datasets.open(Path.of(datasetText));
        if (!(source instanceof LabeledData data)) {
            throw new KilnException("soup: dataset " + datasetText + " is a text corpus; soups fine-tune zoo"
                    + " classifiers on labelled images");
        }
        Path report = CompressGoal.reportPath(output);
        String fingerprint = Fingerprint.of(config, Checksums.sha256(checkpoint), data.sha256());
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("output", output.toString());
        result.put("report", report.toString());
        if (!config.path("force").asBoolean(false) && Fingerprint.matches(output, report, fingerprint)) {
            events.emit(Event.info(UP_TO_DATE));
            JsonNode previous = Json.MAPPER.readTree(report.toFile());
            result.put("soupAccuracy", previous.path("soupAccuracy").isNumber()
                    ? previous.get("soupAccuracy").asDouble() : null);
            result.put("soupSparsity", previous.path("soupSparsity").asDouble());
            result.put("upToDate", true);
            return result;
        }

        events.emit(Event.info(String.format(Locale.ROOT, "Sparse soup of %s: sparsity %s in %d round(s), %d"
                + " ingredient(s) of %d epoch(s) each%s", checkpoint.getFileName(), settings.sparsity(),
                settings.rounds(), settings.ingredients(), fineTune.epochs(), techniqueRecords.isEmpty() ? ""
                        : " with " + techniqueRecords.stream().map(r -> (String) r.get("id")).toList()
                        + (perIngredient ? " (one per ingredient)" : ""))));
        Engine engine = EngineStarter.start(request.engineSettings());
        Map<String, Object> doc = new LinkedHashMap<>();
        try (NDManager manager = engine.newBaseManager()) {
            CheckpointModels.Loaded loaded = CheckpointModels.load(checkpoint, manager);
            ImageDataset train = data.train();
            ImageDataset test = data.test();
            if (train.numClasses() != loaded.model().numClasses()
                    || !train.sampleShape().equals(loaded.model().sampleShape())) {
                throw new KilnException("soup: dataset " + datasetText + " has " + train.numClasses()
                        + " classes of shape " + train.sampleShape() + ", but the model of " + checkpoint + " has "
                        + loaded.model().numClasses() + " classes of shape " + loaded.model().sampleShape());
            }
            // Fine-tune on inputs normalised exactly as the model was trained, not with statistics recomputed here.
            if (loaded.normalization() != null) {
                train = train.normalized(loaded.normalization());
                test = test == null ? null : test.normalized(loaded.normalization());
            }
            Double baseAccuracy = test == null ? null : loaded.accuracy(data.test(), manager, fineTune.batchSize());
            Map<String, NDArray> start = loaded.model().exportParameters(manager);
            SparseSoup.Result soup = new SparseSoup(registry, settings).run(start, train, test, manager,
                    (round, ingredient, accuracy) -> events.emit(Event.progress(String.format(Locale.ROOT,
                            "round %d/%d: ingredient %d/%d test accuracy %.4f", round, settings.rounds(),
                            ingredient, settings.ingredients(), accuracy), Map.of("round", round, "ingredient",
                            ingredient))));

            KilnModel built = ModelZoo.build(model, modelParams, train.sampleShape(), train.numClasses())
                    .initialize(manager, 0);
            built.loadParameters(soup.parameters());
            Map<String, String> metadata = new LinkedHashMap<>(meta);
            metadata.put("kiln.format", "model-v1");
            metadata.put("kiln.version", KilnVersion.get());
            metadata.put("kiln.fingerprint", fingerprint);
            metadata.put("kiln.soup", Json.MAPPER.writeValueAsString(Map.of("sparsity", settings.sparsity(),
                    "global", settings.global(), "ingredients", settings.ingredients(), "rounds", settings.rounds(),
                    "source", checkpoint.getFileName().toString())));
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            built.parameters().forEach((name, p) -> arrays.put(name, p.getArray()));
            // Counted on exactly the arrays about to be written; a violation is never written out.
            SparsityCount count = SparsityCount.of(arrays, soup.masks());
            if (count.violations() > 0) {
                throw new KilnException("soup: " + count.violations() + " weights the mask pruned are non-zero in"
                        + " the soup; this is a Kiln bug, please report it (nothing was written to " + output + ")");
            }
            Files.createDirectories(output.getParent());
            SafetensorsWriter.save(output, metadata, arrays);
            SparseSoup.Round last = soup.rounds().get(soup.rounds().size() - 1);
            doc.put("kilnVersion", KilnVersion.get());
            doc.put("fingerprint", fingerprint);
            doc.put("checkpoint", checkpoint.toString());
            doc.put("output", output.toString());
            doc.put("dataset", datasetText);
            doc.put("model", Map.of("id", model, "params", modelParams));
            doc.put("sparsity", settings.sparsity());
            doc.put("global", settings.global());
            doc.put("ingredients", settings.ingredients());
            doc.put("rounds", settings.rounds());
            doc.put("augment", techniqueRecords);
            doc.put("augmentPerIngredient", perIngredient);
            doc.put("baseAccuracy", baseAccuracy);
            List<Map<String, Object>> rounds = new ArrayList<>();
            for (SparseSoup.Round r : soup.rounds()) {
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("sparsity", r.sparsity());
                row.put("ingredientAccuracies", r.ingredientAccuracies().stream().map(SoupGoal::finite).toList());
                row.put("soupAccuracy", finite(r.soupAccuracy()));
                rounds.add(row);
            }
            doc.put("roundResults", rounds);
            doc.put("soupAccuracy", finite(last.soupAccuracy()));
            doc.put("bestIngredientAccuracy", finite(last.ingredientAccuracies().stream()
                    .mapToDouble(Double::doubleValue).max().orElse(Double.NaN)));
            doc.put("maskSparsity", count.maskSparsity());
            doc.put("soupSparsity", count.soupSparsity());
            doc.put("overallSparsity", count.overallSparsity());
            doc.put("maskViolations", count.violations());
            doc.put("tensors", count.tensors());
        }
        AtomicFiles.writeString(report, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(doc));
        events.emit(Event.info(String.format(Locale.ROOT, "Soup: %.4f%% of prunable weights are zero (mask %.4f%%)%s",
                100 * (double) doc.get("soupSparsity"), 100 * (double) doc.get("maskSparsity"),
                doc.get("soupAccuracy") == null ? "" : String.format(Locale.ROOT, "; test accuracy %.4f -> %.4f"
                        + " (best ingredient %.4f)", doc.get("baseAccuracy"), doc.get("soupAccuracy"),
                        doc.get("bestIngredientAccuracy")))));
        events.emit(Event.info("Sparse soup: " + output));
        events.emit(Event.info("Soup report: " + report));
        result.put("soupAccuracy", doc.get("soupAccuracy"));
        result.put("soupSparsity", doc.get("soupSparsity"));
        result.put("upToDate", false);
        return result;
    }

    /**
     * Zeros counted on the written arrays: over the masked (prunable) tensors, over every floating tensor, and the
     * positions the mask pruned that are not zero (must be none).
     */
    record SparsityCount(double maskSparsity, double soupSparsity, double overallSparsity, long violations,
            List<Map<String, Object>> tensors) {

        static SparsityCount of(Map<String, NDArray> arrays, Map<String, NDArray> masks) {
            long maskZeros = 0;
            long soupZeros = 0;
            long masked = 0;
            long allZeros = 0;
            long all = 0;
            long violations = 0;
            List<Map<String, Object>> rows = new ArrayList<>();
            for (Map.Entry<String, NDArray> e : arrays.entrySet()) {
                NDArray a = e.getValue();
                if (!a.getDataType().isFloating()) {
                    continue;
                }
                long zeros = a.size() - a.countNonzero().getLong();
                allZeros += zeros;
                all += a.size();
                NDArray mask = masks.get(e.getKey());
                if (mask == null) {
                    continue;
                }
                long pruned = mask.size() - mask.countNonzero().getLong();
                NDArray outside = a.mul(mask.eq(0f).toType(a.getDataType(), false).toDevice(a.getDevice(), false));
                long bad = outside.countNonzero().getLong();
                outside.close();
                maskZeros += pruned;
                soupZeros += zeros;
                masked += a.size();
                violations += bad;
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("name", e.getKey());
                row.put("size", a.size());
                row.put("maskZeros", pruned);
                row.put("soupZeros", zeros);
                rows.add(row);
            }
            return new SparsityCount(masked == 0 ? 0 : (double) maskZeros / masked,
                    masked == 0 ? 0 : (double) soupZeros / masked, all == 0 ? 0 : (double) allZeros / all,
                    violations, rows);
        }
    }

    private static Double finite(double value) {
        return Double.isFinite(value) ? value : null;
    }
}
