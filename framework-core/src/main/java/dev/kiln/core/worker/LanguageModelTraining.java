package dev.kiln.core.worker;

import static dev.kiln.core.worker.GoalConfig.required;
import static dev.kiln.core.worker.GoalConfig.strings;
import static dev.kiln.core.worker.GoalConfig.text;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.TextCorpus;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.lm.train.LmTrainer;
import dev.kiln.core.lm.train.LmTrainingConfig;
import dev.kiln.core.lm.train.LmTrainingResult;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.skip.SkipPolicy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The train goal for {@code <model>decoder-lm</model>}: a byte-level decoder trained on a UTF-8 text file for a number
 * of optimisation steps, optionally with a training-time skip policy (layer dropout), then evaluated by validation
 * perplexity on the text's held-out tail. Writes the checkpoint and a model card like the classifier path.
 */
final class LanguageModelTraining {
    /** The model id that selects this path. */
    static final String MODEL_ID = "decoder-lm";
    /** The decoder's shape, bound and range-checked like any technique's parameters. */
    static final List<ParameterSpec> MODEL_PARAMETERS = List.of(
            ParameterSpec.integer("layers", 8L, "transformer blocks").atLeast(1),
            ParameterSpec.integer("dim", 256L, "model width; divisible by heads").atLeast(1),
            ParameterSpec.integer("heads", 4L, "attention heads").atLeast(1),
            ParameterSpec.integer("ffn-multiplier", 4L, "FFN hidden size = dim x this").atLeast(1),
            ParameterSpec.integer("max-length", 256L, "longest sequence (learned positions)").atLeast(2),
            ParameterSpec.flag("tied-head", true, "output head shares the token embedding"));
    private static final int VALIDATION_WINDOWS = 64;

    private LanguageModelTraining() {
    }

    static Map<String, Object> run(WorkerRequest request, EventSink events, Registry registry) throws IOException {
        JsonNode config = request.config();
        Path dataset = Path.of(required(config, "dataset", "train"));
        Path output = Path.of(required(config, "output", "train")).toAbsolutePath();
        Path card = TrainGoal.cardPath(output);
        if (config.path("augment").size() > 0) {
            throw new KilnException("train: <augment> mixes image batches; the decoder-lm trains on text, so remove"
                    + " the augmentations (a training-time <skip> such as layerdrop is allowed)");
        }
        DecoderConfig model = decoderConfig(strings(config.get("modelParams")));
        SkipPolicy policy = null;
        Map<String, Object> skipRecord = null;
        JsonNode skip = config.get("skip");
        String skipId = text(skip, "id");
        if (skipId != null) {
            Map<String, String> raw = strings(skip.get("params"));
            Technique<?> technique = registry.find(Kind.SKIP, skipId);
            Parameters bound = Parameters.bind(technique, raw);
            policy = registry.create(Kind.SKIP, SkipPolicy.class, skipId, raw);
            skipRecord = new LinkedHashMap<>();
            skipRecord.put("id", skipId);
            skipRecord.put("params", bound.asMap());
        }
        int steps = config.path("steps").asInt(1000);
        int seqLength = config.path("seqLength").asInt(128);
        double learningRate = config.path("learningRate").asDouble(1e-3);
        int warmup = config.path("warmupSteps").asInt(0);
        LmTrainingConfig training = new LmTrainingConfig(steps, config.path("batchSize").asInt(16), seqLength,
                learningRate, learningRate / 10, warmup > 0 ? warmup : Math.max(0, Math.min(steps - 1, steps / 20)),
                0.1, 1.0, config.path("seed").asLong(42), Math.max(1, steps / 20));
        if (seqLength > model.maxLength()) {
            throw new KilnException("train: seqLength " + seqLength + " exceeds the model's max-length "
                    + model.maxLength());
        }

        DataSource source = Datasets.open(dataset);
        if (!(source instanceof TextCorpus)) {
            throw new KilnException("train: the decoder-lm trains on a UTF-8 .txt file; " + dataset
                    + " holds labelled images");
        }
        TextCorpus corpus = (TextCorpus) source;
        String fingerprint = Fingerprint.of(config, corpus.sha256());
        if (!config.path("force").asBoolean(false) && Fingerprint.matches(output, card, fingerprint)) {
            return TrainGoal.upToDateResult(output, card, events);
        }
        events.emit(Event.info(String.format(Locale.ROOT, "Training decoder-lm (%d layers, dim %d) on %s (%d train /"
                + " %d validation bytes) for %d steps%s", model.layers(), model.dim(), dataset, corpus.train().length,
                corpus.validation().length, steps, skipId == null ? "" : " with " + skipId)));

        Engine engine = EngineStarter.start(request.engineSettings());
        double perplexity;
        LmTrainingResult result;
        try (NDManager manager = engine.newBaseManager(); DecoderLm lm = new DecoderLm(model, manager,
                training.seed())) {
            result = LmTrainer.train(lm, corpus.train(), training, policy,
                    line -> events.emit(Event.progress(line, Map.of())));
            perplexity = corpus.validation().length > seqLength + 1
                    ? LmTrainer.perplexity(lm, corpus.validation(), seqLength, VALIDATION_WINDOWS, 8) : Double.NaN;
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("kiln.format", "decoder-lm-v1");
            metadata.put("kiln.version", KilnVersion.get());
            metadata.put("kiln.fingerprint", fingerprint);
            metadata.put("kiln.data.sha256", corpus.sha256());
            metadata.put("kiln.seed", Long.toString(training.seed()));
            Files.createDirectories(output.getParent());
            LmCheckpoint.save(lm, output, metadata);
        }
        events.emit(Event.progress(String.format(Locale.ROOT, "trained %d steps in %.1f s: final loss %.4f,"
                + " validation perplexity %.3f", steps, result.seconds(), result.tailLoss(Math.min(20, steps)),
                perplexity), Map.of("validationPerplexity", perplexity)));

        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("kilnVersion", KilnVersion.get());
        doc.put("created", Instant.now().toString());
        doc.put("fingerprint", fingerprint);
        Map<String, Object> modelInfo = new LinkedHashMap<>();
        modelInfo.put("id", MODEL_ID);
        modelInfo.put("params", Map.of("layers", model.layers(), "dim", model.dim(), "heads", model.heads(),
                "ffn-multiplier", model.ffnMultiplier(), "max-length", model.maxLength(), "tied-head",
                model.tiedHead()));
        doc.put("model", modelInfo);
        doc.put("dataset", Map.of("path", dataset.toString(), "format", "text", "sha256", corpus.sha256(),
                "trainBytes", corpus.train().length, "validationBytes", corpus.validation().length));
        doc.put("skip", skipRecord);
        doc.put("training", Json.MAPPER.treeToValue(config, Map.class));
        doc.put("seed", training.seed());
        doc.put("steps", steps);
        doc.put("finalLoss", result.tailLoss(Math.min(20, steps)));
        doc.put("skippedSteps", result.skippedSteps());
        doc.put("seconds", result.seconds());
        doc.put("validationPerplexity", Double.isFinite(perplexity) ? perplexity : null);
        AtomicFiles.writeString(card, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(doc));
        events.emit(Event.info("Model: " + output));
        events.emit(Event.info("Model card: " + card));
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("output", output.toString());
        summary.put("modelCard", card.toString());
        summary.put("validationPerplexity", perplexity);
        return summary;
    }

    /** The decoder's shape from {@code <modelParams>}; unknown names and bad values fail with the valid ones. */
    static DecoderConfig decoderConfig(Map<String, String> raw) {
        Parameters p = Parameters.bind("model '" + MODEL_ID + "'", MODEL_ID, MODEL_PARAMETERS, raw);
        return new DecoderConfig(p.getInt("layers"), p.getInt("dim"), p.getInt("heads"), p.getInt("ffn-multiplier"),
                p.getInt("max-length"), p.getBoolean("tied-head"));
    }
}
