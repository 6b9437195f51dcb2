package dev.kiln.core.lora;

import static dev.kiln.core.worker.GoalConfig.text;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.engine.EngineStarter;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.merge.MergeGoal;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.merge.MergeMethod;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code merge} goal when it is given LoRA {@code adapters} instead of {@code models}: each adapter is a PEFT
 * folder with a {@code weight} (default 1) and optional per-adapter method {@code params}; {@code adapterCombination}
 * says what to do with them.
 *
 * <ul>
 *   <li>{@code sum} (default without {@code method}): {@code base + sum_i w_i delta_i}, a full checkpoint at
 *       {@code output}.</li>
 *   <li>{@code method} (default with {@code method}): the merge method (ties, dare, ...) on the dense updates as task
 *       vectors, added to {@code base}; a full checkpoint at {@code output}. Densifies every adapted layer.</li>
 *   <li>{@code cat}: one adapter of rank {@code sum r_i} whose update is exactly {@code sum_i w_i delta_i}, written as
 *       a PEFT adapter folder at {@code output} (no base needed, nothing densified).</li>
 * </ul>
 *
 * Skipped, like the checkpoint merge, when the output exists and the configuration and inputs are unchanged.
 */
public final class LoraMergeGoal {

    /** The combinations {@code adapterCombination} accepts. */
    public static final List<String> COMBINATIONS = List.of("sum", "method", "cat");

    private LoraMergeGoal() {
    }

    /** Runs the adapter merge described by {@code request}'s configuration. */
    public static Map<String, Object> run(Registry registry, WorkerRequest request, EventSink events)
            throws Exception {
        JsonNode config = request.config();
        String methodId = text(config, "method");
        if (text(config, "config") != null) {
            throw new KilnException("kiln:merge: <adapters> cannot be combined with <config> (a mergekit recipe)");
        }
        if (config.has("models") && config.get("models").size() > 0) {
            throw new KilnException("kiln:merge: give either <models> (full checkpoints) or <adapters> (LoRA "
                    + "adapters), not both");
        }
        String combination = text(config, "adapterCombination");
        combination = combination == null ? (methodId == null ? "sum" : "method")
                : combination.trim().toLowerCase(Locale.ROOT);
        if (!COMBINATIONS.contains(combination)) {
            throw new KilnException("kiln:merge: adapterCombination must be one of " + COMBINATIONS + ", not '"
                    + text(config, "adapterCombination") + "'");
        }
        MergeMethod method = null;
        Map<String, String> params = new LinkedHashMap<>();
        JsonNode explicit = config.get("params");
        if (explicit != null && explicit.isObject()) {
            explicit.fields().forEachRemaining(e -> params.put(e.getKey(), e.getValue().asText()));
        }
        if (combination.equals("method")) {
            if (methodId == null) {
                throw new KilnException("kiln:merge: adapterCombination 'method' needs <method> (e.g. ties)");
            }
            // Fail fast on a misspelt method or parameter, before any adapter is opened.
            method = registry.create(Kind.MERGE, MergeMethod.class, methodId, params);
        } else if (methodId != null || !params.isEmpty()) {
            throw new KilnException("kiln:merge: adapterCombination '" + combination + "' uses no merge method; "
                    + "remove <method>/<params> or set adapterCombination to 'method'");
        }
        String baseText = text(config, "base");
        Path base = baseText == null ? null : Path.of(baseText);
        if (combination.equals("cat") && base != null) {
            throw new KilnException("kiln:merge: adapterCombination 'cat' writes an adapter, not a merged model, "
                    + "so it takes no <base>; use 'sum' to merge the adapters into the base");
        }
        if (!combination.equals("cat") && base == null) {
            throw new KilnException("kiln:merge: adapterCombination '" + combination + "' needs <base>, the "
                    + "checkpoint the adapters were trained on");
        }
        String outputText = text(config, "output");
        if (outputText == null) {
            throw new KilnException("kiln:merge: 'output' is required");
        }
        Path output = Path.of(outputText);
        if (combination.equals("cat") && output.getFileName().toString().endsWith(".safetensors")) {
            throw new KilnException("kiln:merge: adapterCombination 'cat' writes a PEFT adapter folder; set <output> "
                    + "to a folder, not " + output);
        }
        List<Path> paths = new ArrayList<>();
        List<Double> weights = new ArrayList<>();
        List<Map<String, Double>> overrides = new ArrayList<>();
        for (JsonNode a : config.get("adapters")) {
            String p = text(a, "path");
            if (p == null) {
                throw new KilnException("kiln:merge: every <adapter> needs a <path>, got " + a);
            }
            paths.add(Path.of(p));
            weights.add(a.hasNonNull("weight") ? number(a.get("weight"), "weight of adapter " + p) : 1.0);
            Map<String, Double> o = new LinkedHashMap<>();
            JsonNode ap = a.get("params");
            if (ap != null && ap.isObject()) {
                for (Iterator<Map.Entry<String, JsonNode>> it = ap.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    o.put(e.getKey(), number(e.getValue(), "parameter '" + e.getKey() + "' of adapter " + p));
                }
            }
            if (!o.isEmpty() && method == null) {
                throw new KilnException("kiln:merge: adapter " + p + " has <params>, which only a merge method "
                        + "(adapterCombination 'method') uses");
            }
            overrides.add(o);
        }
        long seed = config.hasNonNull("seed") ? config.get("seed").asLong() : 42L;
        boolean force = config.path("force").asBoolean(false);

        Path produced = combination.equals("cat") ? output.resolve(LoraAdapter.WEIGHTS_NAME) : output;
        Path fingerprintFile = combination.equals("cat") ? output.resolve(".kiln-fingerprint")
                : output.resolveSibling(output.getFileName() + ".kiln-fingerprint");
        List<Path> inputs = new ArrayList<>(paths);
        if (base != null) {
            inputs.add(base);
        }
        String fingerprint = MergeGoal.fingerprint(config, inputs, "lora " + combination);
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("output", produced.toString());
        result.put("combination", combination);
        if (!force && Files.exists(produced) && Files.exists(fingerprintFile)
                && fingerprint.equals(Files.readString(fingerprintFile).trim())) {
            events.emit(Event.info(MergeGoal.UP_TO_DATE));
            result.put("upToDate", true);
            return result;
        }
        events.emit(Event.info(force ? "Merging because force = true" : "Merging because inputs changed"));
        EngineStarter.start(request.engineSettings());
        List<LoraAdapter> adapters = new ArrayList<>();
        try {
            for (Path p : paths) {
                adapters.add(LoraAdapter.read(p));
            }
            switch (combination) {
                case "sum" -> LoraMerge.mergeIntoBase(base, adapters, weights, output);
                case "method" -> LoraMerge.mergeWithMethod(base, adapters, weights, overrides, method, methodId, seed,
                        output);
                default -> result.put("rank", LoraMerge.cat(adapters, weights, output));
            }
        } finally {
            for (LoraAdapter a : adapters) {
                a.close();
            }
        }
        AtomicFiles.writeString(fingerprintFile, fingerprint + "\n");
        events.emit(Event.info("Combined " + adapters.size() + " LoRA adapter(s) by " + combination
                + (method != null ? " (" + methodId + ")" : "") + " into " + output));
        result.put("upToDate", false);
        return result;
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
