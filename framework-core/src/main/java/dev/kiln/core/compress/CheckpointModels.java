package dev.kiln.core.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.ParameterStore;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Rebuilds the zoo model a checkpoint was trained as, from the identity that {@link TrainingRun#saveModel} records
 * in its metadata ({@code kiln.model}, {@code kiln.model.parameters}, {@code kiln.input.shape},
 * {@code kiln.data.classes}, {@code kiln.normalization}), and loads plain or compressed parameters into it.
 */
public final class CheckpointModels {
    private static final Pattern NUMBER = Pattern.compile("\\d+");

    private CheckpointModels() {
    }

    /** A model with its parameters loaded, and the input normalisation it was trained with (or null). */
    public record Loaded(KilnModel model, Normalization normalization, List<String> classNames) {

        /** Test accuracy on raw (unnormalised) data, normalised the way training did. */
        public double accuracy(ImageDataset data, NDManager manager, int batchSize) {
            if (data.numClasses() != model.numClasses() || !data.sampleShape().equals(model.sampleShape())) {
                throw new KilnException("dataset " + data + " does not fit the model: it has " + data.numClasses()
                        + " classes of shape " + data.sampleShape() + ", the model " + model.numClasses()
                        + " classes of shape " + model.sampleShape());
            }
            ImageDataset ready = normalization != null && data.normalization() == null
                    ? data.normalized(normalization) : data;
            return TrainingRun.evaluate(model, ready, manager, new ParameterStore(manager, false), batchSize)[1];
        }
    }

    /** Reads {@code file} (compressed or not) and rebuilds its model in {@code manager}. */
    public static Loaded load(Path file, NDManager manager) {
        Map<String, String> meta;
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            meta = reader.metadata();
        }
        String id = required(file, meta, "kiln.model");
        JsonNode params = json(file, meta, "kiln.model.parameters");
        Map<String, String> raw = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = params.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            raw.put(e.getKey(), e.getValue().asText());
        }
        Shape sampleShape = parseShape(file, required(file, meta, "kiln.input.shape"));
        JsonNode classes = json(file, meta, "kiln.data.classes");
        List<String> classNames = new java.util.ArrayList<>();
        classes.forEach(c -> classNames.add(c.asText()));
        Normalization normalization = null;
        String norm = required(file, meta, "kiln.normalization");
        if (!"none".equals(norm)) {
            JsonNode n = json(file, meta, "kiln.normalization");
            normalization = new Normalization(floats(n.path("mean")), floats(n.path("std")));
        }
        KilnModel model = ModelZoo.build(id, raw, sampleShape, classNames.size()).initialize(manager, 0);
        try (NDManager scope = manager.newSubManager()) {
            Map<String, NDArray> weights = CompressedCheckpoints.load(file, scope);
            model.loadParameters(weights);
        }
        return new Loaded(model, normalization, classNames);
    }

    private static String required(Path file, Map<String, String> meta, String key) {
        String value = meta.get(key);
        if (value == null || value.isBlank()) {
            throw new KilnException(file + " has no '" + key + "' metadata, so its model cannot be rebuilt; was it"
                    + " written by kiln:train?");
        }
        return value;
    }

    private static JsonNode json(Path file, Map<String, String> meta, String key) {
        try {
            return Json.MAPPER.readTree(required(file, meta, key));
        } catch (IOException e) {
            throw new KilnException(file + ": metadata '" + key + "' is not valid JSON: " + e.getMessage(), e);
        }
    }

    private static Shape parseShape(Path file, String text) {
        Matcher m = NUMBER.matcher(text);
        List<Long> dims = new java.util.ArrayList<>();
        while (m.find()) {
            dims.add(Long.parseLong(m.group()));
        }
        if (dims.size() != 3) {
            throw new KilnException(file + ": metadata 'kiln.input.shape' is '" + text + "', not (C, H, W)");
        }
        return new Shape(dims.get(0), dims.get(1), dims.get(2));
    }

    private static float[] floats(JsonNode array) {
        float[] out = new float[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) array.get(i).asDouble();
        }
        return out;
    }
}
