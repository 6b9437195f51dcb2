package dev.kiln.core.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Reads a checkpoint written by {@link CompressPipeline} back as dense float32 parameters under their original names,
 * ready for {@link dev.kiln.core.model.KilnModel#loadParameters}. A plain (uncompressed) checkpoint is read as it is.
 *
 * <p>What each stored format costs and saves, honestly:
 * <ul>
 *   <li>{@code int8} ({@code .q} int8 + {@code .scale} per output channel): <b>dequantized on load</b> to float32
 *       ({@code q * scale}). The file is about 4x smaller, but inference runs the ordinary float32 layers: no
 *       speedup and no memory saving once loaded.</li>
 *   <li>{@code magnitude} and {@code nm}: stored as the dense pruned tensor, so neither the file nor inference gets
 *       cheaper here; the zeros pay off only with a sparse kernel (2:4 on GPUs) or a sparse-aware file codec.</li>
 *   <li>{@code structured} ({@code .rows} + {@code .row_index}): the file is smaller; here the layer is
 *       re-expanded with zero rows, but {@link dev.kiln.core.model.CheckpointModels} builds every layer the zoo
 *       model can {@linkplain dev.kiln.core.model.ModelZoo#shrinkable shrink} genuinely narrower (fewer outputs,
 *       matching batch-norm channels, fewer inputs in the next layer), so inference does less work. It removes the
 *       pruned units outright, bias and batch-norm shift included; the classifier head and resnet's residual-path
 *       convs stay full size with zero rows.</li>
 *   <li>{@code low-rank} ({@code .u}, {@code .v}): here the weight is rebuilt as {@code U V}; but
 *       {@link dev.kiln.core.model.CheckpointModels} loads a Linear layer stored this way as a
 *       {@link dev.kiln.core.model.FactoredLinear} (two thin matmuls) whenever {@code r (out + in) < out in}, so
 *       zoo inference is cheaper too.</li>
 *   <li>{@code low-rank-sparse} (plus a coordinate-form residual): the file is smaller; the weight is rebuilt as
 *       {@code U V + S}, and inference uses that dense reconstruction.</li>
 * </ul>
 * In every case the loaded parameters equal the compressor's reconstruction, so accuracy measured on them is the
 * accuracy of the compressed model.
 */
public final class CompressedCheckpoints {

    private CompressedCheckpoints() {
    }

    /** Whether the file is a compressed checkpoint. */
    public static boolean isCompressed(Path file) {
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            return reader.metadata().containsKey(CompressPipeline.METADATA_KEY);
        }
    }

    /** The dense parameters by original name, in the original order, as float32 (or their own type if copied). */
    public static Map<String, NDArray> load(Path file, NDManager manager) {
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            String recordText = reader.metadata().get(CompressPipeline.METADATA_KEY);
            Map<String, NDArray> out = new LinkedHashMap<>();
            if (recordText == null) {
                for (String name : reader.names()) {
                    out.put(name, reader.read(name, manager));
                }
                return out;
            }
            JsonNode record;
            try {
                record = dev.kiln.core.worker.Json.MAPPER.readTree(recordText);
            } catch (IOException e) {
                throw new KilnException(file + ": the " + CompressPipeline.METADATA_KEY + " metadata is not valid"
                        + " JSON: " + e.getMessage(), e);
            }
            JsonNode tensors = record.path("tensors");
            Set<String> storedNames = new HashSet<>();
            for (Iterator<JsonNode> it = tensors.elements(); it.hasNext(); ) {
                it.next().path("stored").elements().forEachRemaining(n -> storedNames.add(n.asText()));
            }
            JsonNode names = record.path("names");
            if (!names.isArray()) {
                throw new KilnException(file + ": the " + CompressPipeline.METADATA_KEY + " metadata has no 'names'");
            }
            for (JsonNode n : names) {
                String name = n.asText();
                JsonNode entry = tensors.get(name);
                if (entry == null) {
                    if (!reader.contains(name)) {
                        throw new KilnException(file + ": tensor '" + name + "' is listed but not stored");
                    }
                    out.put(name, reader.read(name, manager));
                } else {
                    out.put(name, reconstruct(file, reader, name, entry, manager));
                }
            }
            for (String name : reader.names()) {
                if (!storedNames.contains(name) && !out.containsKey(name)) {
                    throw new KilnException(file + ": tensor '" + name + "' is neither an original tensor nor part"
                            + " of a compressed one");
                }
            }
            return out;
        }
    }

    /**
     * A 2-D weight stored in {@code low-rank} format: its stored factor names ({@code .u} [out, r], {@code .v}
     * [r, in]) and rank.
     */
    public record LowRankFactors(String weight, String uStored, String vStored, int rank) {
    }

    /**
     * The 2-D weights of a compressed checkpoint stored in {@code low-rank} format at a rank where running them as
     * two thin matmuls is cheaper than the dense product, {@code r (out + in) < out in}; the one rule both the zoo
     * loader and the decoder LM's loader apply. A weight whose factors are missing is skipped (the dense load names
     * the missing part); factors of the wrong shape are an error naming both.
     *
     * @param record the checkpoint's {@link CompressPipeline#METADATA_KEY} metadata, or null for none
     */
    public static List<LowRankFactors> cheaperLowRank(Path file, SafetensorsReader reader, String record) {
        List<LowRankFactors> out = new ArrayList<>();
        if (record == null) {
            return out;
        }
        JsonNode tensors;
        try {
            tensors = dev.kiln.core.worker.Json.MAPPER.readTree(record).path("tensors");
        } catch (IOException e) {
            throw new KilnException(file + ": the " + CompressPipeline.METADATA_KEY + " metadata is not valid JSON: "
                    + e.getMessage(), e);
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = tensors.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode entry = e.getValue();
            JsonNode shape = entry.path("shape");
            if (!name.endsWith(".weight") || !"low-rank".equals(entry.path("metadata").path("format").asText())
                    || !shape.isArray() || shape.size() != 2) {
                continue;
            }
            String u = entry.path("stored").path(".u").asText("");
            String v = entry.path("stored").path(".v").asText("");
            if (!reader.contains(u) || !reader.contains(v)) {
                continue;
            }
            long outFeatures = shape.get(0).asLong();
            long inFeatures = shape.get(1).asLong();
            long[] uShape = reader.info(u).shape();
            long[] vShape = reader.info(v).shape();
            if (uShape.length != 2 || vShape.length != 2 || uShape[0] != outFeatures || vShape[1] != inFeatures
                    || uShape[1] != vShape[0] || uShape[1] < 1) {
                throw new KilnException("checkpoint " + file + ": low-rank tensor '" + name + "' of shape ["
                        + outFeatures + ", " + inFeatures + "] has factors " + u + " " + Arrays.toString(uShape)
                        + " and " + v + " " + Arrays.toString(vShape) + "; expected [" + outFeatures + ", r] and [r, "
                        + inFeatures + "]");
            }
            long rank = uShape[1];
            if (rank * (outFeatures + inFeatures) < outFeatures * inFeatures) {
                out.add(new LowRankFactors(name, u, v, (int) rank));
            }
        }
        return out;
    }

    /** Rebuilds one dense tensor from its stored parts; the intermediates live in a sub-manager. */
    static NDArray reconstruct(Path file, SafetensorsReader reader, String name, JsonNode entry, NDManager manager) {
        String format = entry.path("metadata").path("format").asText("");
        Shape shape = shape(entry.path("shape"));
        try (NDManager scope = manager.newSubManager()) {
            NDArray dense;
            switch (format) {
                case "magnitude":
                case "nm":
                    dense = part(file, reader, name, entry, "", scope).toType(DataType.FLOAT32, false);
                    break;
                case "int8-symmetric-per-channel": {
                    NDArray q = part(file, reader, name, entry, ".q", scope).toType(DataType.FLOAT32, false);
                    NDArray scale = part(file, reader, name, entry, ".scale", scope);
                    dense = q.reshape(shape.get(0), shape.size() / shape.get(0))
                            .mul(scale.reshape(shape.get(0), 1));
                    break;
                }
                case "structured": {
                    NDArray rows = part(file, reader, name, entry, ".rows", scope);
                    NDArray index = part(file, reader, name, entry, ".row_index", scope).toType(DataType.INT64,
                            false);
                    long rest = shape.size() / shape.get(0);
                    long kept = index.size();
                    // scatter needs an index as large as the source: every column of a kept row goes to that row.
                    NDArray spread = index.reshape(kept, 1).repeat(1, rest);
                    dense = scope.zeros(new Shape(shape.get(0), rest)).scatter(spread, rows.reshape(kept, rest), 0);
                    break;
                }
                case "low-rank":
                    dense = part(file, reader, name, entry, ".u", scope).matMul(part(file, reader, name, entry,
                            ".v", scope));
                    break;
                case "low-rank-sparse": {
                    NDArray product = part(file, reader, name, entry, ".u", scope).matMul(part(file, reader, name,
                            entry, ".v", scope));
                    NDArray values = part(file, reader, name, entry, ".residual", scope);
                    NDArray index = part(file, reader, name, entry, ".residual_index", scope)
                            .toType(DataType.INT64, false);
                    NDArray sparse = scope.zeros(new Shape(product.size())).scatter(index, values, 0);
                    dense = product.reshape(product.size()).add(sparse);
                    break;
                }
                default:
                    throw new KilnException(file + ": tensor '" + name + "' is stored in format '" + format
                            + "', which this Kiln cannot load (known: magnitude, nm, int8-symmetric-per-channel, "
                            + "structured, low-rank, low-rank-sparse)");
            }
            if (dense.size() != shape.size()) {
                throw new KilnException(file + ": tensor '" + name + "' (format " + format + ") rebuilds to "
                        + dense.size() + " elements, but its shape " + shape + " has " + shape.size());
            }
            NDArray result = dense.reshape(shape).toType(DataType.FLOAT32, false);
            result.attach(manager);
            return result;
        }
    }

    private static NDArray part(Path file, SafetensorsReader reader, String name, JsonNode entry, String suffix,
            NDManager scope) {
        JsonNode storedName = entry.path("stored").get(suffix);
        if (storedName == null || !reader.contains(storedName.asText())) {
            throw new KilnException(file + ": compressed tensor '" + name + "' lacks its stored part '" + name
                    + suffix + "'");
        }
        return reader.read(storedName.asText(), scope);
    }

    private static Shape shape(JsonNode dims) {
        long[] shape = new long[dims.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = dims.get(i).asLong();
        }
        return new Shape(shape);
    }
}
