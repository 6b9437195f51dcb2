package dev.kiln.core.merge;

import static dev.kiln.core.worker.GoalConfig.text;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.fisher.FisherEstimator;
import dev.kiln.core.fisher.FisherStatistics;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.lora.LoraMergeGoal;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.Fingerprint;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.Goal;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.merge.MergeMethod;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.inject.Inject;

/**
 * The worker's {@code merge} goal: merges checkpoints as configured by {@code kiln:merge}, either from explicit
 * settings ({@code method}, {@code params}, {@code base}, {@code models}) or from a mergekit YAML recipe
 * ({@code config}).
 *
 * <p>The method and its parameters are validated through the registry before anything is read. The merge is skipped
 * when the output exists and its fingerprint (the normalized configuration, the inputs' sizes and modification times
 * and the Kiln version) is unchanged, unless {@code force} is set.
 */
public final class MergeGoal implements Goal {

    /** The info line logged when nothing changed. */
    public static final String UP_TO_DATE = "Merged model is up to date, skipping merge";

    private final Registry registry;

    @Inject
    MergeGoal(Registry registry) {
        this.registry = registry;
    }

    /** A goal over {@code registry}, for callers outside the worker's injector (tests, embedding). */
    public static MergeGoal using(Registry registry) {
        return new MergeGoal(registry);
    }

    @Override
    public String name() {
        return "merge";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) throws Exception {
        JsonNode config = request.config();
        if (config.has("adapters") && config.get("adapters").size() > 0) {
            // LoRA adapters instead of full checkpoints: a different pipeline over the same goal and options.
            return LoraMergeGoal.run(registry, request, events);
        }
        String yaml = text(config, "config");
        String methodId = text(config, "method");
        Map<String, String> params = new LinkedHashMap<>();
        Path base = path(text(config, "base"));
        List<MergeSpec.ModelInput> models = new ArrayList<>();
        DType outputDtype = null;
        if (yaml != null) {
            if (methodId != null || base != null || (config.has("models") && config.get("models").size() > 0)) {
                throw new KilnException("kiln:merge: 'config' (a mergekit YAML recipe) cannot be combined with "
                        + "method, base or models; put everything in the recipe or nothing");
            }
            MergeConfig recipe = MergeConfig.read(Path.of(yaml));
            recipe.warnings().forEach(w -> events.emit(Event.warn(w)));
            methodId = recipe.methodId();
            params.putAll(recipe.params());
            base = recipe.base();
            models.addAll(recipe.models());
            outputDtype = recipe.outputDtype();
        } else {
            if (methodId == null) {
                throw new KilnException("kiln:merge: set 'method' (e.g. ties) and 'models', or 'config' (a mergekit"
                        + " YAML recipe)");
            }
            JsonNode list = config.get("models");
            if (list != null && list.isArray()) {
                for (JsonNode m : list) {
                    String p = text(m, "path");
                    if (p == null) {
                        throw new KilnException("kiln:merge: every <model> needs a <path>, got " + m);
                    }
                    double weight = m.hasNonNull("weight") ? number(m.get("weight"), "weight of model " + p) : 1.0;
                    Map<String, Double> overrides = new LinkedHashMap<>();
                    JsonNode mp = m.get("params");
                    if (mp != null && mp.isObject()) {
                        for (Iterator<Map.Entry<String, JsonNode>> it = mp.fields(); it.hasNext(); ) {
                            Map.Entry<String, JsonNode> e = it.next();
                            overrides.put(e.getKey(), number(e.getValue(), "parameter '" + e.getKey()
                                    + "' of model " + p));
                        }
                    }
                    String fisher = text(m, "fisher");
                    models.add(new MergeSpec.ModelInput(Path.of(p), weight, overrides,
                            fisher == null ? null : Path.of(fisher)));
                }
            }
        }
        JsonNode explicit = config.get("params");
        if (explicit != null && explicit.isObject()) {
            explicit.fields().forEachRemaining(e -> params.put(e.getKey(), e.getValue().asText()));
        }
        // Fail fast on a misspelt method or parameter, before any checkpoint is opened.
        MergeMethod method = registry.create(Kind.MERGE, MergeMethod.class, methodId, params);
        if (models.isEmpty()) {
            throw new KilnException("kiln:merge: no models to merge; list them under <models>");
        }
        String outputText = text(config, "output");
        if (outputText == null) {
            throw new KilnException("kiln:merge: 'output' is required");
        }
        Path output = Path.of(outputText);
        if (text(config, "outputDtype") != null) {
            outputDtype = MergeConfig.dtype(text(config, "outputDtype"), "kiln:merge outputDtype");
        }
        int threads = config.hasNonNull("threads") ? config.get("threads").asInt() : 0;
        if (threads <= 0) {
            threads = Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));
        }
        long seed = config.hasNonNull("seed") ? config.get("seed").asLong() : 42L;
        long maxShardBytes = config.hasNonNull("maxShardBytes") ? config.get("maxShardBytes").asLong() : 0L;
        if (maxShardBytes < 0) {
            throw new KilnException("kiln:merge: maxShardBytes must be positive (or 0 for one file), not "
                    + maxShardBytes);
        }
        boolean allowNonFinite = config.path("allowNonFinite").asBoolean(false);
        boolean force = config.path("force").asBoolean(false);
        Path fisherDataset = path(text(config, "fisherDataset"));
        FisherEstimator.Settings fisherSettings = new FisherEstimator.Settings(config.hasNonNull("fisherSamples")
                ? config.get("fisherSamples").asInt() : FisherEstimator.Settings.DEFAULT_SAMPLES,
                FisherEstimator.Mode.parse(text(config, "fisherMode")), seed);
        // Fishers are inputs of the merge: resolve (and compute) them before the fingerprint looks at their files.
        models = FisherStatistics.resolve(methodId, models, fisherDataset, fisherSettings,
                () -> EngineStarter.start(request.engineSettings()), events);
        MergeSpec spec = new MergeSpec(methodId, params, base, models, output, threads, seed, outputDtype,
                maxShardBytes, allowNonFinite);

        Path produced = MergePipeline.producedFile(output, maxShardBytes);
        Path fingerprintFile = output.resolveSibling(output.getFileName() + ".kiln-fingerprint");
        String fingerprint = fingerprint(config, spec, yaml);
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("output", produced.toString());
        result.put("report", MergePipeline.reportFile(output).toString());
        if (!force && Files.exists(produced) && Files.exists(fingerprintFile)
                && fingerprint.equals(Files.readString(fingerprintFile).trim())) {
            events.emit(Event.info(UP_TO_DATE));
            result.put("upToDate", true);
            return result;
        }
        events.emit(Event.info(force ? "Merging because force = true" : "Merging because inputs changed"));
        EngineStarter.start(request.engineSettings());
        Map<String, Object> report = new MergePipeline(method, spec, events).run();
        AtomicFiles.writeString(fingerprintFile, fingerprint + "\n");
        result.put("upToDate", false);
        result.put("method", methodId);
        result.put("totals", report.get("totals"));
        return result;
    }

    /** sha256 of the normalized configuration, the inputs' sizes and times, the recipe text and the Kiln version. */
    static String fingerprint(JsonNode config, MergeSpec spec, String yaml) throws IOException {
        List<Path> inputs = new ArrayList<>();
        if (spec.base() != null) {
            inputs.add(spec.base());
        }
        spec.models().forEach(m -> {
            inputs.add(m.path());
            if (m.statistic() != null) {
                inputs.add(m.statistic());
            }
        });
        return fingerprint(config, inputs, yaml == null ? null : "recipe " + Files.readString(Path.of(yaml)));
    }

    /**
     * The up-to-date key: the configuration, the Kiln version, {@code extra} (or nothing) and the size and modification
     * time of every input file (hashing multi-GB checkpoints on every build would cost more than it saves).
     */
    public static String fingerprint(JsonNode config, List<Path> inputs, String extra) throws IOException {
        return Fingerprint.of(config, Fingerprint.fileStamps(inputs), extra == null ? "" : extra);
    }

    private static Path path(String text) {
        return text == null ? null : Path.of(text);
    }

    private static double number(JsonNode node, String what) {
        if (node.isNumber()) {
            return node.asDouble();
        }
        try {
            return Double.parseDouble(node.asText().trim());
        } catch (NumberFormatException e) {
            throw new KilnException("kiln:merge: " + what + " must be a number, got '" + node.asText() + "'");
        }
    }
}
