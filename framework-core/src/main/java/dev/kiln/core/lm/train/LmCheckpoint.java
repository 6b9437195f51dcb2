package dev.kiln.core.lm.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.compress.CompressedCheckpoints;
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

    /**
     * Copies the tensors of {@code file} into {@code model}'s weights; every name and shape must match. A checkpoint
     * written by {@code kiln:compress} loads too: every weight as its dense reconstruction, and each linear layer
     * stored in {@code low-rank} format at a rank where it is cheaper ({@code r (out + in) < out in}) additionally
     * {@linkplain DecoderLm#factor runs as two thin matmuls}. The embeddings (and the tied head) always run dense.
     */
    public static void loadInto(DecoderLm model, Path file) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            String record = r.metadata() == null ? null : r.metadata().get(CompressPipeline.METADATA_KEY);
            if (record != null) {
                loadCompressed(model, file, r, record);
                return;
            }
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

    private static void loadCompressed(DecoderLm model, Path file, SafetensorsReader reader, String record) {
        try (NDManager scope = NDManager.newBaseManager()) {
            Map<String, NDArray> dense = CompressedCheckpoints.load(file, scope);
            for (Map.Entry<String, NDArray> e : model.weights().entrySet()) {
                NDArray value = dense.get(e.getKey());
                if (value == null) {
                    throw new KilnException("LM checkpoint " + file + " lacks tensor '" + e.getKey() + "'");
                }
                if (!value.getShape().equals(e.getValue().getShape())) {
                    throw new KilnException("LM checkpoint " + file + ": tensor '" + e.getKey() + "' has shape "
                            + value.getShape() + ", the model needs " + e.getValue().getShape());
                }
                e.getValue().set(value.toFloatArray());
            }
            model.refreshDerived();
            for (CompressedCheckpoints.LowRankFactors f : CompressedCheckpoints.cheaperLowRank(file, reader, record)) {
                if (DecoderLm.isFactorable(f.weight())) {
                    model.factor(f.weight(), reader.read(f.uStored(), scope), reader.read(f.vStored(), scope));
                }
            }
        }
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
