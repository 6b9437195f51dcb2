package dev.kiln.core.lm.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * {@link DecoderLm} weights as safetensors, under the model's own tensor names, with the configuration in the
 * metadata ({@code kiln.lm.layers}, {@code .dim}, {@code .heads}, {@code .ffnMultiplier}, {@code .maxLength},
 * {@code .tiedHead}) so a file can rebuild its model. Writes are atomic.
 */
public final class LmCheckpoint {
    private static final String PREFIX = "kiln.lm.";

    private LmCheckpoint() {
    }

    /** Writes the weights of {@code model} and its configuration to {@code file}. */
    public static void save(DecoderLm model, Path file, Map<String, String> extraMetadata) {
        DecoderConfig c = model.config();
        Map<String, String> meta = new LinkedHashMap<>(extraMetadata);
        meta.put(PREFIX + "layers", Integer.toString(c.layers()));
        meta.put(PREFIX + "dim", Integer.toString(c.dim()));
        meta.put(PREFIX + "heads", Integer.toString(c.heads()));
        meta.put(PREFIX + "ffnMultiplier", Integer.toString(c.ffnMultiplier()));
        meta.put(PREFIX + "maxLength", Integer.toString(c.maxLength()));
        meta.put(PREFIX + "tiedHead", Boolean.toString(c.tiedHead()));
        SafetensorsWriter.save(file, meta, model.weights());
    }

    /** The configuration stored in {@code file}. */
    public static DecoderConfig config(Path file) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            Map<String, String> m = r.metadata();
            return new DecoderConfig(intOf(m, file, "layers"), intOf(m, file, "dim"), intOf(m, file, "heads"),
                    intOf(m, file, "ffnMultiplier"), intOf(m, file, "maxLength"),
                    Boolean.parseBoolean(required(m, file, "tiedHead")));
        }
    }

    /** A model built from the configuration in {@code file}, with its weights. */
    public static DecoderLm load(Path file, NDManager manager) {
        DecoderLm model = new DecoderLm(config(file), manager, 0);
        try {
            loadInto(model, file);
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
        return model;
    }

    /** Copies the tensors of {@code file} into {@code model}'s weights; every name and shape must match. */
    public static void loadInto(DecoderLm model, Path file) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            for (Map.Entry<String, NDArray> e : model.weights().entrySet()) {
                String name = e.getKey();
                if (!r.contains(name)) {
                    throw new KilnException("LM checkpoint " + file + " lacks tensor '" + name + "'");
                }
                long[] want = e.getValue().getShape().getShape();
                long[] got = r.info(name).shape();
                if (!Arrays.equals(want, got)) {
                    throw new KilnException("LM checkpoint " + file + ": tensor '" + name + "' has shape "
                            + Arrays.toString(got) + ", the model needs " + Arrays.toString(want));
                }
                e.getValue().set(r.readFloats(name));
            }
        }
        model.refreshDerived();
    }

    private static int intOf(Map<String, String> m, Path file, String key) {
        String v = required(m, file, key);
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new KilnException("LM checkpoint " + file + ": metadata " + PREFIX + key + " = '" + v
                    + "' is not an integer", e);
        }
    }

    private static String required(Map<String, String> m, Path file, String key) {
        String v = m.get(PREFIX + key);
        if (v == null) {
            throw new KilnException("LM checkpoint " + file + " has no metadata " + PREFIX + key
                    + "; was it written by LmCheckpoint?");
        }
        return v;
    }
}
