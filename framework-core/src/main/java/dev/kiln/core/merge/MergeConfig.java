package dev.kiln.core.merge;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.kiln.core.safetensors.DType;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A mergekit-style YAML recipe ({@code mergekit-yaml} format) translated to Kiln's merge settings, so existing
 * recipes run unchanged.
 *
 * <p>Supported: {@code merge_method}, {@code base_model}, {@code models[].model}, {@code models[].parameters}
 * (numeric; {@code weight} becomes the model's weight, anything else a per-model override), global
 * {@code parameters}, {@code dtype}/{@code out_dtype} (the output dtype), and {@code tokenizer_source},
 * {@code tokenizer}, {@code chat_template} and {@code int8_mask}, which are accepted and ignored with a warning since
 * Kiln writes only the weights. Slices, gradients (lists) and filtered parameters are refused with a clear message.
 * Model paths are relative to the YAML file's folder.
 *
 * @param methodId the Kiln merge method id
 * @param params the method's parameters in Kiln's names
 * @param base the base checkpoint, or null
 * @param models the models with their weights and overrides
 * @param outputDtype the output dtype, or null
 * @param warnings what was accepted but ignored
 */
public record MergeConfig(String methodId, Map<String, String> params, Path base, List<MergeSpec.ModelInput> models,
        DType outputDtype, List<String> warnings) {

    /** Top-level keys understood. */
    public static final Set<String> KEYS = new TreeSet<>(List.of("merge_method", "base_model", "models", "parameters",
            "dtype", "out_dtype", "tokenizer_source", "tokenizer", "chat_template"));

    /** mergekit method name to Kiln id and the fixed parameters the mapping implies. */
    private static final Map<String, Map.Entry<String, Map<String, String>>> METHODS = new LinkedHashMap<>();

    static {
        METHODS.put("linear", Map.entry("linear", Map.of()));
        METHODS.put("task_arithmetic", Map.entry("task-arithmetic", Map.of()));
        METHODS.put("ties", Map.entry("ties", Map.of()));
        // mergekit's DARE rescales by L1-norm matching since v0.1.
        METHODS.put("dare_linear", Map.entry("dare", Map.of("consensus", "none", "rescale", "l1")));
        METHODS.put("dare_ties", Map.entry("dare", Map.of("consensus", "ties", "rescale", "l1")));
        METHODS.put("breadcrumbs", Map.entry("breadcrumbs", Map.of()));
        METHODS.put("breadcrumbs_ties", Map.entry("breadcrumbs", Map.of("consensus", "ties")));
        METHODS.put("slerp", Map.entry("slerp", Map.of()));
        METHODS.put("model_stock", Map.entry("model-stock", Map.of()));
    }

    /** Global parameter names, mergekit to Kiln ({@code null}: accepted and ignored). */
    private static final Map<String, String> GLOBAL_PARAMS = new LinkedHashMap<>();

    static {
        GLOBAL_PARAMS.put("normalize", "normalize");
        GLOBAL_PARAMS.put("lambda", "lambda");
        GLOBAL_PARAMS.put("density", "density");
        GLOBAL_PARAMS.put("gamma", "gamma");
        GLOBAL_PARAMS.put("t", "t");
        GLOBAL_PARAMS.put("rescale", "rescale");
        GLOBAL_PARAMS.put("filter_wise", "filter-wise");
        GLOBAL_PARAMS.put("weight", "weight");
        GLOBAL_PARAMS.put("int8_mask", null);
    }

    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

    /** Reads and translates a recipe file. */
    public static MergeConfig read(Path file) {
        String text;
        try {
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new KilnException("merge config " + file + " does not exist", e);
        } catch (IOException e) {
            throw new KilnException("cannot read merge config " + file + ": " + e, e);
        }
        Path folder = file.toAbsolutePath().getParent();
        return parse(text, folder, file.toString());
    }

    /** Translates recipe text; relative paths resolve against {@code folder}. */
    public static MergeConfig parse(String text, Path folder, String source) {
        JsonNode root;
        try {
            root = YAML.readTree(text);
        } catch (JacksonException e) {
            JsonLocation where = e.getLocation();
            throw new KilnException("merge config " + source + (where == null ? "" : " line " + where.getLineNr())
                    + " is not valid YAML: " + e.getOriginalMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new KilnException("merge config " + source + " must be a YAML mapping with merge_method and models");
        }
        List<String> warnings = new ArrayList<>();
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!KEYS.contains(key)) {
                String hint = key.equals("slices") || key.equals("modules")
                        ? " (slices/modules frankenmerges are not supported by Kiln)" : "";
                throw new KilnException("merge config " + source + lineOf(text, key) + ": unsupported key '" + key
                        + "'" + hint + "; supported keys: " + String.join(", ", KEYS));
            }
        }
        for (String ignored : List.of("tokenizer_source", "tokenizer", "chat_template")) {
            if (root.has(ignored)) {
                warnings.add("merge config " + source + ": '" + ignored + "' is ignored (Kiln merges the weights "
                        + "only; copy the tokenizer files yourself)");
            }
        }
        String mergekitMethod = requiredText(root, "merge_method", source, text);
        Map.Entry<String, Map<String, String>> mapped = METHODS.get(mergekitMethod);
        if (mapped == null) {
            throw new KilnException("merge config " + source + lineOf(text, "merge_method")
                    + ": unsupported merge_method '" + mergekitMethod + "'; supported: "
                    + String.join(", ", METHODS.keySet()));
        }
        String methodId = mapped.getKey();
        Map<String, String> params = new LinkedHashMap<>(mapped.getValue());
        double defaultWeight = 1.0;
        JsonNode global = root.get("parameters");
        if (global != null && !global.isNull()) {
            if (!global.isObject()) {
                throw new KilnException("merge config " + source + lineOf(text, "parameters")
                        + ": 'parameters' must be a mapping");
            }
            for (Iterator<Map.Entry<String, JsonNode>> it = global.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                String key = e.getKey();
                if (!GLOBAL_PARAMS.containsKey(key)) {
                    throw new KilnException("merge config " + source + lineOf(text, key)
                            + ": unsupported parameter '" + key + "'; supported parameters: "
                            + String.join(", ", GLOBAL_PARAMS.keySet()));
                }
                JsonNode value = scalar(e.getValue(), "parameters." + key, source, text, key);
                String kiln = GLOBAL_PARAMS.get(key);
                if (kiln == null) {
                    warnings.add("merge config " + source + ": parameter '" + key + "' is ignored (Kiln always "
                            + "computes in float32)");
                } else if (kiln.equals("weight")) {
                    defaultWeight = number(value, "parameters.weight", source, text);
                } else if (kiln.equals("rescale")) {
                    // mergekit's rescale is a flag whose true means L1-norm matching.
                    params.put("rescale", value.asBoolean() ? "l1" : "none");
                } else {
                    params.put(kiln, value.asText());
                }
            }
        }
        Path base = null;
        JsonNode baseNode = root.get("base_model");
        if (baseNode != null && !baseNode.isNull()) {
            base = folder.resolve(baseNode.asText()).normalize();
        }
        JsonNode modelsNode = root.get("models");
        if (modelsNode == null || !modelsNode.isArray() || modelsNode.isEmpty()) {
            throw new KilnException("merge config " + source + lineOf(text, "models")
                    + ": 'models' must be a non-empty list of {model: path, parameters: {...}}");
        }
        List<MergeSpec.ModelInput> models = new ArrayList<>();
        for (JsonNode entry : modelsNode) {
            if (!entry.isObject() || !entry.hasNonNull("model")) {
                throw new KilnException("merge config " + source + ": every entry of 'models' needs 'model: <path>',"
                        + " got " + entry);
            }
            for (Iterator<String> it = entry.fieldNames(); it.hasNext(); ) {
                String key = it.next();
                if (!key.equals("model") && !key.equals("parameters")) {
                    throw new KilnException("merge config " + source + lineOf(text, key) + ": unsupported key '"
                            + key + "' in a models entry; supported: model, parameters");
                }
            }
            Path path = folder.resolve(entry.get("model").asText()).normalize();
            double weight = defaultWeight;
            Map<String, Double> overrides = new LinkedHashMap<>();
            JsonNode p = entry.get("parameters");
            if (p != null && !p.isNull()) {
                if (!p.isObject()) {
                    throw new KilnException("merge config " + source + ": parameters of model " + path
                            + " must be a mapping");
                }
                for (Iterator<Map.Entry<String, JsonNode>> it = p.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    String name = "models[" + entry.get("model").asText() + "].parameters." + e.getKey();
                    double value = number(scalar(e.getValue(), name, source, text, e.getKey()), name, source, text);
                    if (e.getKey().equals("weight")) {
                        weight = value;
                    } else {
                        overrides.put(e.getKey(), value);
                    }
                }
            }
            models.add(new MergeSpec.ModelInput(path, weight, overrides));
        }
        if (!methodId.equals("slerp") && base != null) {
            // mergekit lists the base among the models in many recipes but leaves it out of the task vectors.
            Path b = base;
            models.removeIf(m -> m.path().equals(b));
            if (models.isEmpty()) {
                throw new KilnException("merge config " + source + ": 'models' lists only the base model");
            }
        }
        if (methodId.equals("slerp") && base != null) {
            // mergekit interpolates from base_model (t = 0) to the other model; Kiln's slerp takes them in order.
            List<MergeSpec.ModelInput> ordered = new ArrayList<>();
            for (MergeSpec.ModelInput m : models) {
                if (m.path().equals(base)) {
                    ordered.add(0, m);
                } else {
                    ordered.add(m);
                }
            }
            if (ordered.get(0).path().equals(base)) {
                models = ordered;
            } else {
                models.add(0, MergeSpec.ModelInput.of(base));
            }
            base = null;
        }
        DType outputDtype = null;
        String dtypeKey = root.hasNonNull("out_dtype") ? "out_dtype" : root.hasNonNull("dtype") ? "dtype" : null;
        if (dtypeKey != null) {
            outputDtype = dtype(root.get(dtypeKey).asText(), source + lineOf(text, dtypeKey));
        }
        return new MergeConfig(methodId, params, base, List.copyOf(models), outputDtype, List.copyOf(warnings));
    }

    /** mergekit/torch dtype names to safetensors dtypes. */
    public static DType dtype(String name, String where) {
        switch (name.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "float32", "fp32", "f32":
                return DType.F32;
            case "float16", "fp16", "f16", "half":
                return DType.F16;
            case "bfloat16", "bf16":
                return DType.BF16;
            case "float64", "f64":
                return DType.F64;
            default:
                throw new KilnException(where + ": unsupported dtype '" + name
                        + "'; supported: float32, float16, bfloat16, float64");
        }
    }

    private static String requiredText(JsonNode root, String key, String source, String text) {
        JsonNode node = root.get(key);
        if (node == null || node.isNull() || !node.isValueNode() || node.asText().isBlank()) {
            throw new KilnException("merge config " + source + lineOf(text, key) + ": '" + key + "' is required");
        }
        return node.asText().trim();
    }

    private static JsonNode scalar(JsonNode value, String name, String source, String text, String key) {
        if (!value.isValueNode() || value.isNull()) {
            throw new KilnException("merge config " + source + lineOf(text, key) + ": '" + name + "' must be a single "
                    + "value; gradients (lists) and filtered values are not supported by Kiln, got " + value);
        }
        return value;
    }

    private static double number(JsonNode value, String name, String source, String text) {
        if (value.isNumber()) {
            return value.asDouble();
        }
        if (value.isBoolean()) {
            return value.asBoolean() ? 1 : 0;
        }
        try {
            return Double.parseDouble(value.asText().trim());
        } catch (NumberFormatException e) {
            throw new KilnException("merge config " + source + ": '" + name + "' must be a number, got '"
                    + value.asText() + "'");
        }
    }

    /** " line N" of the first line declaring {@code key}, or "" when not found (the tree keeps no locations). */
    static String lineOf(String text, String key) {
        Pattern p = Pattern.compile("^[\\s-]*[\"']?" + Pattern.quote(key) + "[\"']?\\s*:", Pattern.MULTILINE);
        Matcher m = p.matcher(text);
        if (!m.find()) {
            return "";
        }
        int line = 1;
        for (int i = 0; i < m.start(); i++) {
            if (text.charAt(i) == '\n') {
                line++;
            }
        }
        return " line " + line;
    }
}
