package dev.kiln.core.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.TensorInfo;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * A LoRA adapter saved by Hugging Face PEFT: a folder with {@value #CONFIG_NAME} and {@value #WEIGHTS_NAME}.
 *
 * <p>Each adapted linear layer {@code <module>} contributes {@code base_model.model.<module>.lora_A.weight} (r x in)
 * and {@code base_model.model.<module>.lora_B.weight} (out x r). Its weight update is
 * {@code delta W = s * B A} with {@code s = lora_alpha / r}, or {@code lora_alpha / sqrt(r)} when {@code use_rslora}
 * is set, transposed to (in x out) when {@code fan_in_fan_out} is set (GPT-2 style Conv1D layers store their weight
 * that way). It applies to the base checkpoint's tensor {@code <module>.weight}. PEFT's per-module
 * {@code rank_pattern} and {@code alpha_pattern} overrides are honoured.
 *
 * <p>{@link #read(Path)} validates everything it can from the config and the safetensors header before any value is
 * read: every module has both factors, their ranks agree with each other and with the config, shapes are matrices.
 * Parts PEFT can save that Kiln does not apply (DoRA magnitudes, embedding or convolution LoRA, LoRA biases,
 * {@code modules_to_save} weights, the legacy {@code adapter_model.bin}) are refused by name rather than silently
 * dropped. The adapter keeps its weights file open so factors stream one module at a time; close it when done.
 */
public final class LoraAdapter implements AutoCloseable {

    /** The config file PEFT writes. */
    public static final String CONFIG_NAME = "adapter_config.json";

    /** The weights file PEFT writes. */
    public static final String WEIGHTS_NAME = "adapter_model.safetensors";

    /** The prefix PEFT puts in front of every module path when it saves. */
    public static final String KEY_PREFIX = "base_model.model.";

    private static final String A_SUFFIX = ".lora_A.weight";
    private static final String B_SUFFIX = ".lora_B.weight";

    /**
     * One adapted layer.
     *
     * @param name the module path, e.g. {@code model.layers.0.self_attn.q_proj}
     * @param aKey the key of its A factor (r x in) in the weights file
     * @param bKey the key of its B factor (out x r)
     * @param rank r of this module
     * @param in the layer's input features
     * @param out the layer's output features
     * @param scaling s: alpha / r, or alpha / sqrt(r) with rsLoRA
     * @param fanInFanOut whether the base stores this weight as (in x out)
     */
    public record Module(String name, String aKey, String bKey, int rank, long in, long out, double scaling,
            boolean fanInFanOut) {

        /** The base checkpoint tensor this module updates. */
        public String baseTensor() {
            return name + ".weight";
        }

        /** The shape of the weight update, which is the base tensor's shape. */
        public long[] deltaShape() {
            return fanInFanOut ? new long[] {in, out} : new long[] {out, in};
        }
    }

    private final Path dir;
    private final ObjectNode config;
    private final int r;
    private final double alpha;
    private final boolean useRslora;
    private final boolean fanInFanOut;
    private final Map<String, Module> modules;
    private final SafetensorsReader weights;

    private LoraAdapter(Path dir, ObjectNode config, int r, double alpha, boolean useRslora, boolean fanInFanOut,
            Map<String, Module> modules, SafetensorsReader weights) {
        this.dir = dir;
        this.config = config;
        this.r = r;
        this.alpha = alpha;
        this.useRslora = useRslora;
        this.fanInFanOut = fanInFanOut;
        this.modules = Collections.unmodifiableMap(modules);
        this.weights = weights;
    }

    /**
     * Opens and validates the adapter in {@code dir}.
     *
     * @throws KilnException naming the folder, file, module or key when anything is missing or inconsistent
     */
    public static LoraAdapter read(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new KilnException("LoRA adapter " + dir + " is not a folder; expected a PEFT adapter folder with "
                    + CONFIG_NAME + " and " + WEIGHTS_NAME);
        }
        Path configFile = dir.resolve(CONFIG_NAME);
        Path weightsFile = dir.resolve(WEIGHTS_NAME);
        if (!Files.isRegularFile(configFile)) {
            throw new KilnException("LoRA adapter " + dir + " has no " + CONFIG_NAME);
        }
        if (!Files.isRegularFile(weightsFile)) {
            String legacy = Files.exists(dir.resolve("adapter_model.bin"))
                    ? " (it has the legacy pickle adapter_model.bin, which Kiln does not load: re-save it with "
                            + "safe_serialization=True)"
                    : "";
            throw new KilnException("LoRA adapter " + dir + " has no " + WEIGHTS_NAME + legacy);
        }
        JsonNode parsed;
        try {
            parsed = Json.MAPPER.readTree(configFile.toFile());
        } catch (IOException e) {
            throw new KilnException("LoRA adapter config " + configFile + " is not valid JSON: " + e.getMessage(), e);
        }
        if (!(parsed instanceof ObjectNode config)) {
            throw new KilnException("LoRA adapter config " + configFile + " must be a JSON object");
        }
        String peftType = config.path("peft_type").asText("LORA");
        if (!"LORA".equalsIgnoreCase(peftType)) {
            throw new KilnException("LoRA adapter config " + configFile + " has peft_type '" + peftType
                    + "'; only LORA adapters are supported");
        }
        if (config.path("use_dora").asBoolean(false)) {
            throw new KilnException("LoRA adapter config " + configFile + " sets use_dora: DoRA adapters rescale "
                    + "the merged weight by a magnitude vector, which Kiln does not apply");
        }
        int r = positiveInt(config, "r", configFile);
        double alpha = number(config, "lora_alpha", configFile);
        boolean rslora = config.path("use_rslora").asBoolean(false);
        boolean fanInFanOut = config.path("fan_in_fan_out").asBoolean(false);
        Map<String, Integer> rankPattern = intPattern(config, "rank_pattern", configFile);
        Map<String, Double> alphaPattern = doublePattern(config, "alpha_pattern", configFile);

        SafetensorsReader reader = SafetensorsReader.open(weightsFile);
        try {
            Map<String, String[]> pairs = new LinkedHashMap<>();
            for (String key : reader.names()) {
                String module = moduleOf(key, weightsFile);
                String[] pair = pairs.computeIfAbsent(module, m -> new String[2]);
                pair[key.endsWith(A_SUFFIX) ? 0 : 1] = key;
            }
            if (pairs.isEmpty()) {
                throw new KilnException("LoRA adapter " + weightsFile + " holds no lora_A/lora_B tensors");
            }
            Map<String, Module> modules = new LinkedHashMap<>();
            for (Map.Entry<String, String[]> e : pairs.entrySet()) {
                String module = e.getKey();
                String aKey = e.getValue()[0];
                String bKey = e.getValue()[1];
                if (aKey == null || bKey == null) {
                    throw new KilnException("LoRA adapter " + weightsFile + ": module '" + module + "' has "
                            + (aKey == null ? "lora_B but no lora_A" : "lora_A but no lora_B") + " (missing key '"
                            + KEY_PREFIX + module + (aKey == null ? A_SUFFIX : B_SUFFIX) + "')");
                }
                TensorInfo a = reader.info(aKey);
                TensorInfo b = reader.info(bKey);
                for (TensorInfo t : List.of(a, b)) {
                    if (t.shape().length != 2) {
                        throw new KilnException("LoRA adapter " + weightsFile + ": tensor '" + t.name() + "' has shape "
                                + Arrays.toString(t.shape()) + "; only linear-layer LoRA (2-D factors) is supported");
                    }
                    if (!t.dtype().isFloating()) {
                        throw new KilnException("LoRA adapter " + weightsFile + ": tensor '" + t.name() + "' has dtype "
                                + t.dtype() + "; LoRA factors must be float");
                    }
                }
                long rankA = a.shape()[0];
                long rankB = b.shape()[1];
                if (rankA != rankB) {
                    throw new KilnException("LoRA adapter " + weightsFile + ": module '" + module + "' has lora_A of "
                            + "shape " + Arrays.toString(a.shape()) + " (rank " + rankA + ") but lora_B of shape "
                            + Arrays.toString(b.shape()) + " (rank " + rankB + ")");
                }
                String rankKey = patternKey(rankPattern.keySet(), module);
                int expected = rankKey == null ? r : rankPattern.get(rankKey);
                if (rankA != expected) {
                    throw new KilnException("LoRA adapter " + weightsFile + ": module '" + module + "' has rank "
                            + rankA + " (lora_A shape " + Arrays.toString(a.shape()) + ") but " + configFile
                            + " says r = " + expected + (rankKey == null ? "" : " (rank_pattern '" + rankKey + "')"));
                }
                String alphaKey = patternKey(alphaPattern.keySet(), module);
                double moduleAlpha = alphaKey == null ? alpha : alphaPattern.get(alphaKey);
                double scaling = rslora ? moduleAlpha / Math.sqrt(expected) : moduleAlpha / expected;
                modules.put(module, new Module(module, aKey, bKey, expected, a.shape()[1], b.shape()[0], scaling,
                        fanInFanOut));
            }
            return new LoraAdapter(dir, config, r, alpha, rslora, fanInFanOut, modules, reader);
        } catch (RuntimeException e) {
            reader.close();
            throw e;
        }
    }

    /** The module path of a weights key; refuses keys that are not linear LoRA factors. */
    private static String moduleOf(String key, Path weightsFile) {
        String suffix = key.endsWith(A_SUFFIX) ? A_SUFFIX : key.endsWith(B_SUFFIX) ? B_SUFFIX : null;
        if (suffix == null || !key.startsWith(KEY_PREFIX) || key.length() <= KEY_PREFIX.length() + suffix.length()) {
            String why;
            if (key.contains("lora_magnitude_vector")) {
                why = "a DoRA magnitude vector";
            } else if (key.contains("lora_embedding_")) {
                why = "an embedding LoRA factor";
            } else if (key.endsWith(".bias")) {
                why = "a LoRA bias";
            } else if (!key.startsWith(KEY_PREFIX)) {
                why = "not under '" + KEY_PREFIX + "' as PEFT saves adapters";
            } else {
                why = "neither '<module>" + A_SUFFIX + "' nor '<module>" + B_SUFFIX
                        + "' (modules_to_save weights are not supported)";
            }
            throw new KilnException("LoRA adapter " + weightsFile + ": tensor '" + key + "' is " + why
                    + "; Kiln applies only linear-layer lora_A/lora_B pairs");
        }
        return key.substring(KEY_PREFIX.length(), key.length() - suffix.length());
    }

    /** PEFT's pattern lookup: the first key k for which the module path matches {@code (.*\.)?k$}. */
    static String patternKey(Iterable<String> keys, String module) {
        for (String key : keys) {
            try {
                if (Pattern.compile("(.*\\.)?(" + key + ")$").matcher(module).matches()) {
                    return key;
                }
            } catch (PatternSyntaxException e) {
                if (module.equals(key) || module.endsWith("." + key)) {
                    return key;
                }
            }
        }
        return null;
    }

    private static int positiveInt(JsonNode config, String field, Path file) {
        JsonNode node = config.get(field);
        if (node == null || !node.canConvertToInt() || node.asInt() <= 0 || !node.isIntegralNumber()) {
            throw new KilnException("LoRA adapter config " + file + ": '" + field + "' must be a positive integer, got "
                    + (node == null ? "nothing" : node.toString()));
        }
        return node.asInt();
    }

    private static double number(JsonNode config, String field, Path file) {
        JsonNode node = config.get(field);
        if (node == null || !node.isNumber() || !Double.isFinite(node.asDouble())) {
            throw new KilnException("LoRA adapter config " + file + ": '" + field + "' must be a finite number, got "
                    + (node == null ? "nothing" : node.toString()));
        }
        return node.asDouble();
    }

    private static Map<String, Integer> intPattern(JsonNode config, String field, Path file) {
        Map<String, Integer> out = new LinkedHashMap<>();
        JsonNode node = config.get(field);
        if (node == null || node.isNull()) {
            return out;
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isIntegralNumber() || e.getValue().asInt() <= 0) {
                throw new KilnException("LoRA adapter config " + file + ": " + field + "['" + e.getKey()
                        + "'] must be a positive integer, got " + e.getValue());
            }
            out.put(e.getKey(), e.getValue().asInt());
        }
        return out;
    }

    private static Map<String, Double> doublePattern(JsonNode config, String field, Path file) {
        Map<String, Double> out = new LinkedHashMap<>();
        JsonNode node = config.get(field);
        if (node == null || node.isNull()) {
            return out;
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isNumber()) {
                throw new KilnException("LoRA adapter config " + file + ": " + field + "['" + e.getKey()
                        + "'] must be a number, got " + e.getValue());
            }
            out.put(e.getKey(), e.getValue().asDouble());
        }
        return out;
    }

    /** The adapter folder. */
    public Path dir() {
        return dir;
    }

    /** A copy of the parsed {@value #CONFIG_NAME}. */
    public ObjectNode config() {
        return config.deepCopy();
    }

    /** The config's {@code r}. */
    public int r() {
        return r;
    }

    /** The config's {@code lora_alpha}. */
    public double alpha() {
        return alpha;
    }

    /** Whether scaling is alpha / sqrt(r) (rank-stabilized LoRA). */
    public boolean useRslora() {
        return useRslora;
    }

    /** Whether the base stores the adapted weights as (in x out). */
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    /** The adapted modules by module path, in the weights file's order. */
    public Map<String, Module> modules() {
        return modules;
    }

    /** The dtype the factors of {@code module} are stored in (A's). */
    public DType dtype(Module module) {
        return weights.info(module.aKey()).dtype();
    }

    /** The A factor (r x in) of {@code module} as float32 on {@code manager}. */
    public NDArray loraA(Module module, NDManager manager) {
        return asFloat(weights.read(module.aKey(), manager));
    }

    /** The B factor (out x r) of {@code module} as float32 on {@code manager}. */
    public NDArray loraB(Module module, NDManager manager) {
        return asFloat(weights.read(module.bKey(), manager));
    }

    /**
     * The module's dense weight update {@code s * B A} (transposed when fan_in_fan_out) as float32 on
     * {@code manager}, shaped like the base tensor. This is out x in floats: a full-size matrix, not a low-rank one.
     */
    public NDArray delta(Module module, NDManager manager) {
        try (NDManager scratch = manager.newSubManager()) {
            NDArray a = loraA(module, scratch);
            NDArray b = loraB(module, scratch);
            NDArray product = b.matMul(a).mul((float) module.scaling());
            NDArray delta = module.fanInFanOut() ? product.transpose() : product;
            // Contiguous copy so the result does not hang on to the scratch manager's storage.
            NDArray out = delta.duplicate();
            out.attach(manager);
            return out;
        }
    }

    private static NDArray asFloat(NDArray array) {
        return array.getDataType() == DataType.FLOAT32 ? array : array.toType(DataType.FLOAT32, false);
    }

    /** The module paths as a list (for messages). */
    List<String> moduleNames() {
        return new ArrayList<>(modules.keySet());
    }

    @Override
    public void close() {
        weights.close();
    }

    @Override
    public String toString() {
        return "LoRA adapter " + dir + " (r=" + r + ", alpha=" + alpha + ", " + modules.size() + " modules)";
    }
}
