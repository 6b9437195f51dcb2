package dev.kiln.core.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import ai.djl.training.ParameterStore;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.compress.CompressedCheckpoints;
import dev.kiln.core.compress.CompressedCheckpoints.LowRankFactors;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns a classifier checkpoint written by {@link dev.kiln.core.train.TrainingRun#saveModel} (or an epoch checkpoint
 * of a training run) back into a ready {@link KilnModel}: the zoo id, model parameters, classes, input shape and
 * normalisation are all read from the safetensors {@code __metadata__}, so nothing about the model is repeated in
 * the pom.
 */
public final class CheckpointModels {
    /** Metadata keys every Kiln classifier checkpoint carries. */
    public static final List<String> REQUIRED_KEYS = List.of("kiln.format", "kiln.model", "kiln.model.parameters",
            "kiln.data.classes", "kiln.input.shape", "kiln.normalization");
    /** The format {@code kiln:compress} writes. */
    private static final String COMPRESSED = "compressed-v1";
    /** Training checkpoints also hold optimiser state under this prefix; it is not part of the model. */
    private static final String OPTIMIZER_PREFIX = "optimizer.";

    private CheckpointModels() {
    }

    /**
     * A loaded classifier and what its checkpoint says about the data it expects.
     *
     * @param file the checkpoint
     * @param model the initialised model with the checkpoint's parameters
     * @param classes class names in label order
     * @param normalization the per-channel statistics the model was trained with, or null when it was trained on
     *     raw values
     * @param metadata the checkpoint's full metadata
     */
    public record Loaded(Path file, KilnModel model, List<String> classes, Normalization normalization,
            Map<String, String> metadata) {

        /** Accuracy on {@code data} given raw (unnormalised), normalised the way training did. */
        public double accuracy(ImageDataset data, NDManager manager, int batchSize) {
            if (data.numClasses() != model.numClasses() || !data.sampleShape().equals(model.sampleShape())) {
                throw new KilnException("dataset " + data + " does not fit the model of " + file + ": it has "
                        + data.numClasses() + " classes of shape " + data.sampleShape() + ", the model "
                        + model.numClasses() + " classes of shape " + model.sampleShape());
            }
            ImageDataset ready = normalization != null && data.normalization() == null
                    ? data.normalized(normalization) : data;
            return TrainingRun.evaluate(model, ready, manager, new ParameterStore(manager, false), batchSize)[1];
        }
    }

    /**
     * The weight names of the layers whose outputs {@code file}'s model can lose and still load as smaller dense
     * layers ({@link ModelZoo#shrinkable}), or null when {@code file} is not a Kiln classifier checkpoint.
     */
    public static List<String> shrinkableWeights(Path file) {
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            Map<String, String> meta = reader.metadata() == null ? Map.of() : reader.metadata();
            if (missingKey(meta) != null) {
                return null;
            }
            Zoo zoo = Zoo.of(file, meta);
            return ModelZoo.shrinkable(zoo.id(), zoo.params(), zoo.shape(), zoo.classes().size()).stream()
                    .map(s -> s.layer() + ".weight").toList();
        }
    }

    /** The zoo model a classifier checkpoint's metadata describes. */
    private record Zoo(String id, Map<String, String> params, List<String> classes, Shape shape) {
        static Zoo of(Path file, Map<String, String> meta) {
            return new Zoo(meta.get("kiln.model"), modelParameters(file, meta),
                    stringList(file, "kiln.data.classes", meta.get("kiln.data.classes")),
                    parseShape(file, meta.get("kiln.input.shape")));
        }
    }

    /** The first of {@link #REQUIRED_KEYS} that {@code meta} lacks, or null. */
    private static String missingKey(Map<String, String> meta) {
        for (String key : REQUIRED_KEYS) {
            if (meta.get(key) == null || meta.get(key).isBlank()) {
                return key;
            }
        }
        return null;
    }

    /** The zoo model's parameters recorded in a checkpoint's metadata ({@code kiln.model.parameters}). */
    public static Map<String, String> modelParameters(Path file, Map<String, String> meta) {
        return stringMap(file, "kiln.model.parameters", meta.get("kiln.model.parameters"));
    }

    /**
     * Loads {@code file}; the model's parameters live in {@code manager}.
     *
     * @throws KilnException when the file is missing, not safetensors, not a Kiln classifier checkpoint (naming the
     *     missing metadata key), or its tensors do not fit the model it describes
     */
    public static Loaded load(Path file, NDManager manager) {
        if (!Files.isRegularFile(file)) {
            throw new KilnException("checkpoint " + file + " does not exist (train it first, e.g. with kiln:train)");
        }
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            Map<String, String> meta = reader.metadata() == null ? Map.of() : reader.metadata();
            String missing = missingKey(meta);
            if (missing != null) {
                throw new KilnException("checkpoint " + file + " is not a Kiln classifier checkpoint: its"
                        + " __metadata__ has no '" + missing + "' (Kiln writes " + String.join(", ", REQUIRED_KEYS)
                        + " when it trains a model)");
            }
            String format = meta.get("kiln.format");
            if (!format.equals("model-v1") && !format.equals("checkpoint-v1") && !format.equals(COMPRESSED)) {
                throw new KilnException("checkpoint " + file + " has kiln.format '" + format
                        + "'; Kiln reads model-v1, checkpoint-v1 and " + COMPRESSED);
            }
            Zoo zoo = Zoo.of(file, meta);
            String id = zoo.id();
            Map<String, String> params = zoo.params();
            List<String> classes = zoo.classes();
            Shape shape = zoo.shape();
            Normalization stats = parseNormalization(file, meta.get("kiln.normalization"), shape);
            Map<String, LowRankFactors> factored = format.equals(COMPRESSED)
                    ? lowRankLinears(file, reader, meta.get(CompressPipeline.METADATA_KEY))
                    : savedFactors(file, reader);
            Map<String, Integer> ranks = new LinkedHashMap<>();
            factored.forEach((layer, f) -> ranks.put(layer, f.rank()));
            Map<String, ModelZoo.Shrinkable> shrinkable = new LinkedHashMap<>();
            ModelZoo.shrinkable(id, params, shape, classes.size()).forEach(u -> shrinkable.put(u.layer(), u));
            Map<String, long[]> keptRows = format.equals(COMPRESSED)
                    ? structuredRows(file, reader, meta.get(CompressPipeline.METADATA_KEY), shrinkable)
                    : Map.of();
            Map<String, Integer> widths = new LinkedHashMap<>();
            keptRows.forEach((layer, rows) -> widths.put(layer, rows.length));
            if (!format.equals(COMPRESSED)) {
                widths.putAll(savedWidths(reader, shrinkable));
            }
            KilnModel model;
            try {
                model = ModelZoo.build(id, params, shape, classes.size(), ranks, widths).initialize(manager, 0);
            } catch (KilnException e) {
                throw new KilnException("checkpoint " + file + ": " + e.getMessage(), e);
            }
            try (NDManager scope = manager.newSubManager()) {
                Map<String, NDArray> arrays = new LinkedHashMap<>();
                if (format.equals(COMPRESSED)) {
                    // Stored forms (int8 + scales, low-rank factors, ...) rebuilt into dense weights; the factored
                    // layers then take the stored factors in place of the rebuilt weight (this also checks that the
                    // factors fit their recorded shape).
                    for (Map.Entry<String, NDArray> e : CompressedCheckpoints.load(file, scope).entrySet()) {
                        LowRankFactors f = factored.get(layerOf(e.getKey()));
                        if (f != null && e.getKey().equals(f.weight())) {
                            arrays.put(f.weight() + ".v", reader.read(f.vStored(), scope));
                            arrays.put(f.weight() + ".u", reader.read(f.uStored(), scope));
                        } else {
                            arrays.put(e.getKey(), e.getValue());
                        }
                    }
                    for (Map.Entry<String, long[]> e : keptRows.entrySet()) {
                        shrink(file, arrays, shrinkable.get(e.getKey()), e.getValue(), scope);
                    }
                } else {
                    for (String name : reader.names()) {
                        if (!name.startsWith(OPTIMIZER_PREFIX)) {
                            arrays.put(name, reader.read(name, scope));
                        }
                    }
                }
                try {
                    model.loadParameters(arrays);
                } catch (KilnException e) {
                    throw new KilnException("checkpoint " + file + ": " + e.getMessage(), e);
                }
            }
            return new Loaded(file, model, classes, stats, Map.copyOf(meta));
        }
    }


    private static String layerOf(String tensor) {
        int dot = tensor.lastIndexOf('.');
        return dot < 0 ? tensor : tensor.substring(0, dot);
    }

    /**
     * The layers to run factored, by layer name: every 2-D {@code <layer>.weight} in plain {@code low-rank} format
     * (zoo models have 2-D weights only in Linear layers) whose rank makes two thin matmuls cheaper than one dense
     * one. {@code low-rank-sparse} is left dense, since its residual would need a third, sparse product.
     */
    private static Map<String, LowRankFactors> lowRankLinears(Path file, SafetensorsReader reader, String record) {
        Map<String, LowRankFactors> out = new LinkedHashMap<>();
        for (LowRankFactors f : CompressedCheckpoints.cheaperLowRank(file, reader, record)) {
            out.put(layerOf(f.weight()), f);
        }
        return out;
    }

    /**
     * The layers to build narrower, by layer name, with the output rows they keep (ascending): every
     * {@code <layer>.weight} in {@code structured} format whose layer the model can {@linkplain ModelZoo#shrinkable
     * shrink}. Other structured tensors (the classifier head, resnet's residual-path convs) load full size with zero
     * rows, as {@link CompressedCheckpoints#load} rebuilds them.
     */
    private static Map<String, long[]> structuredRows(Path file, SafetensorsReader reader, String record,
            Map<String, ModelZoo.Shrinkable> shrinkable) {
        Map<String, long[]> out = new LinkedHashMap<>();
        if (record == null) {
            return out;
        }
        JsonNode tensors = parse(file, CompressPipeline.METADATA_KEY, record).path("tensors");
        for (Iterator<Map.Entry<String, JsonNode>> it = tensors.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode entry = e.getValue();
            ModelZoo.Shrinkable unit = shrinkable.get(layerOf(name));
            if (unit == null || !name.endsWith(".weight")
                    || !"structured".equals(entry.path("metadata").path("format").asText())) {
                continue;
            }
            String indexName = entry.path("stored").path(".row_index").asText("");
            if (!reader.contains(indexName)) {
                // Left to CompressedCheckpoints.load, which names the missing part.
                continue;
            }
            long rows = entry.path("shape").path(0).asLong(-1);
            long[] kept;
            try (NDManager scope = NDManager.newBaseManager()) {
                kept = reader.read(indexName, scope).toType(ai.djl.ndarray.types.DataType.INT64, false)
                        .toLongArray();
            }
            if (rows != unit.width()) {
                throw new KilnException("checkpoint " + file + ": structured tensor '" + name + "' has " + rows
                        + " rows but layer '" + unit.layer() + "' of this model has " + unit.width() + " outputs");
            }
            for (int i = 0; i < kept.length; i++) {
                if (kept[i] < 0 || kept[i] >= rows || (i > 0 && kept[i] <= kept[i - 1])) {
                    throw new KilnException("checkpoint " + file + ": structured tensor '" + name + "' keeps rows "
                            + Arrays.toString(kept) + "; expected distinct ascending indices below " + rows);
                }
            }
            if (kept.length == 0) {
                throw new KilnException("checkpoint " + file + ": structured tensor '" + name + "' keeps no rows");
            }
            out.put(unit.layer(), kept);
        }
        return out;
    }

    /**
     * Narrows {@code arrays} (the dense reconstruction, zero rows included) to the smaller layer: the layer's weight
     * rows and bias entries, its batch norms' channels and its consumer's input columns, all to {@code kept}.
     *
     * <p>This removes the pruned units outright. A full-size model with zero rows would still pass each removed
     * unit's bias (or batch-norm shift) through the activation into the next layer as a constant; after a padded
     * conv that constant's contribution differs at the image border, so no narrower model can reproduce it. Removing
     * the unit is the standard meaning of channel pruning, and it is exactly equal to the full-size model with the
     * unit's weight row, bias and batch-norm scale and shift all zero.
     */
    private static void shrink(Path file, Map<String, NDArray> arrays, ModelZoo.Shrinkable unit, long[] kept,
            NDManager scope) {
        NDArray index = scope.create(kept);
        String layer = unit.layer();
        for (String part : List.of(layer + ".weight", layer + ".bias")) {
            if (arrays.containsKey(part)) {
                arrays.put(part, arrays.get(part).get(index));
            }
        }
        for (String norm : unit.norms()) {
            for (String stat : List.of(".weight", ".bias", ".running_mean", ".running_var")) {
                if (arrays.containsKey(norm + stat)) {
                    arrays.put(norm + stat, arrays.get(norm + stat).get(index));
                }
            }
        }
        String consumer = unit.consumer() + ".weight";
        NDArray next = arrays.get(consumer);
        if (next == null) {
            throw new KilnException("checkpoint " + file + ": layer '" + layer + "' is stored narrower, but its"
                    + " consumer '" + consumer + "' is not a dense weight in the checkpoint");
        }
        Shape shape = next.getShape();
        long in = shape.get(1);
        if (in % unit.width() != 0) {
            throw new KilnException("checkpoint " + file + ": tensor '" + consumer + "' has " + in + " inputs, not a"
                    + " multiple of the " + unit.width() + " outputs of '" + layer + "'");
        }
        // Input column c * block + j belongs to channel c (block = 1 after a Linear or for a conv kernel's channel
        // axis, H * W after a flatten), so slicing channel blocks covers every case.
        long outputs = shape.get(0);
        long[] dims = shape.getShape();
        long rest = shape.size() / (outputs * unit.width());
        NDArray sliced = next.reshape(outputs, unit.width(), rest).transpose(1, 0, 2).get(index).transpose(1, 0, 2);
        dims[1] = in / unit.width() * kept.length;
        arrays.put(consumer, sliced.reshape(new Shape(dims)));
    }

    /**
     * In a plain checkpoint saved from an already narrowed model, the width of each shrinkable layer as stored, so
     * the model is rebuilt with the same structure.
     */
    private static Map<String, Integer> savedWidths(SafetensorsReader reader,
            Map<String, ModelZoo.Shrinkable> shrinkable) {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (ModelZoo.Shrinkable unit : shrinkable.values()) {
            String weight = unit.layer() + ".weight";
            String name = reader.contains(weight) ? weight : reader.contains(weight + ".u") ? weight + ".u" : null;
            if (name != null && reader.info(name).shape().length >= 2
                    && reader.info(name).shape()[0] != unit.width()) {
                out.put(unit.layer(), (int) reader.info(name).shape()[0]);
            }
        }
        return out;
    }

    /**
     * In a plain checkpoint saved from an already factored model ({@link KilnModel#exportParameters} names the
     * factors {@code <layer>.weight.u} and {@code <layer>.weight.v}), the layers stored that way, so the model is
     * rebuilt with the same structure.
     */
    private static Map<String, LowRankFactors> savedFactors(Path file, SafetensorsReader reader) {
        Map<String, LowRankFactors> out = new LinkedHashMap<>();
        for (String name : reader.names()) {
            if (!name.endsWith(".weight.u") || name.startsWith(OPTIMIZER_PREFIX)) {
                continue;
            }
            String weight = name.substring(0, name.length() - 2);
            String v = weight + ".v";
            if (!reader.contains(v) || reader.contains(weight)) {
                continue;
            }
            long[] uShape = reader.info(name).shape();
            long[] vShape = reader.info(v).shape();
            if (uShape.length != 2 || vShape.length != 2 || uShape[1] != vShape[0] || uShape[1] < 1) {
                throw new KilnException("checkpoint " + file + ": factors " + name + " " + Arrays.toString(uShape)
                        + " and " + v + " " + Arrays.toString(vShape) + " do not multiply; expected [out, r] and [r,"
                        + " in]");
            }
            out.put(layerOf(weight), new LowRankFactors(weight, name, v, (int) uShape[1]));
        }
        return out;
    }

    private static JsonNode parse(Path file, String key, String text) {
        try {
            return Json.MAPPER.readTree(text);
        } catch (IOException e) {
            throw new KilnException("checkpoint " + file + ": metadata '" + key + "' is not JSON: " + text, e);
        }
    }

    private static Map<String, String> stringMap(Path file, String key, String text) {
        JsonNode node = parse(file, key, text);
        if (!node.isObject()) {
            throw new KilnException("checkpoint " + file + ": metadata '" + key + "' is not a JSON object: " + text);
        }
        Map<String, String> out = new LinkedHashMap<>();
        Iterator<Map.Entry<String, JsonNode>> fields = node.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> field = fields.next();
            out.put(field.getKey(), field.getValue().asText());
        }
        return out;
    }

    private static List<String> stringList(Path file, String key, String text) {
        JsonNode node = parse(file, key, text);
        if (!node.isArray() || node.size() < 2) {
            throw new KilnException("checkpoint " + file + ": metadata '" + key + "' must list at least two classes,"
                    + " got " + text);
        }
        List<String> out = new ArrayList<>();
        node.forEach(n -> out.add(n.asText()));
        return out;
    }

    /** Reads DJL's {@code Shape.toString()} form, e.g. {@code (1, 28, 28)}. */
    static Shape parseShape(Path file, String text) {
        String inner = text.trim().replaceAll("^\\(|\\)$", "");
        String[] parts = inner.split(",");
        long[] dims = new long[parts.length];
        try {
            for (int i = 0; i < parts.length; i++) {
                dims[i] = Long.parseLong(parts[i].trim());
            }
        } catch (NumberFormatException e) {
            dims = new long[0];
        }
        if (dims.length != 3 || dims[0] < 1 || dims[1] < 1 || dims[2] < 1) {
            throw new KilnException("checkpoint " + file + ": metadata 'kiln.input.shape' is '" + text
                    + "'; expected (C, H, W) such as (1, 28, 28)");
        }
        return new Shape(dims);
    }

    private static Normalization parseNormalization(Path file, String text, Shape shape) {
        if (text.equals("none")) {
            return null;
        }
        JsonNode node = parse(file, "kiln.normalization", text);
        JsonNode mean = node.path("mean");
        JsonNode std = node.path("std");
        if (!mean.isArray() || !std.isArray() || mean.size() != shape.get(0) || std.size() != shape.get(0)) {
            throw new KilnException("checkpoint " + file + ": metadata 'kiln.normalization' needs 'mean' and 'std'"
                    + " with one value per channel (" + shape.get(0) + "), got " + text);
        }
        float[] m = new float[mean.size()];
        float[] s = new float[std.size()];
        for (int c = 0; c < m.length; c++) {
            m[c] = (float) mean.get(c).asDouble();
            s[c] = (float) std.get(c).asDouble();
            if (!(s[c] > 0)) {
                throw new KilnException("checkpoint " + file + ": metadata 'kiln.normalization' has std " + s[c]
                        + " for channel " + c + "; it must be positive");
            }
        }
        return new Normalization(m, s);
    }
}
