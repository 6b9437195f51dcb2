package dev.kiln.core.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A checkpoint seen as one set of named tensors, whether it is a single safetensors file or Hugging Face shards with a
 * {@code model.safetensors.index.json} ({@code {"metadata": {...}, "weight_map": {tensor: shard file}}}).
 *
 * <p>Opening reads the index and every shard's header, and checks that each tensor the index names is in its shard.
 * A {@code weight_map} entry that leaves the index's folder (an absolute path, a {@code ..} segment) is refused, so a
 * downloaded index cannot make Kiln read arbitrary files. Symbolic links inside the folder are followed, as the
 * Hugging Face cache links shard names to blobs.
 */
public final class ShardedCheckpoint implements AutoCloseable {

    /** The index file name Hugging Face writes next to the shards. */
    public static final String INDEX_NAME = "model.safetensors.index.json";

    /** The single-file name Hugging Face uses when a model is not sharded. */
    public static final String SINGLE_NAME = "model.safetensors";

    private final Path source;
    private final Map<String, String> metadata;
    private final Map<String, SafetensorsReader> byTensor;
    private final List<SafetensorsReader> readers;

    private ShardedCheckpoint(Path source, Map<String, String> metadata, Map<String, SafetensorsReader> byTensor,
            List<SafetensorsReader> readers) {
        this.source = source;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.byTensor = Collections.unmodifiableMap(byTensor);
        this.readers = List.copyOf(readers);
    }

    /**
     * Opens a checkpoint: an index file ({@code *.json}), a single safetensors file, or a directory holding
     * {@value #INDEX_NAME} or {@value #SINGLE_NAME}.
     */
    public static ShardedCheckpoint open(Path path) {
        if (Files.isDirectory(path)) {
            Path index = path.resolve(INDEX_NAME);
            if (Files.exists(index)) {
                return openIndex(index);
            }
            Path single = path.resolve(SINGLE_NAME);
            if (Files.exists(single)) {
                return openSingle(single);
            }
            throw new KilnException("Checkpoint directory " + path + " holds neither " + INDEX_NAME + " nor "
                    + SINGLE_NAME);
        }
        if (path.getFileName() != null && path.getFileName().toString().endsWith(".json")) {
            return openIndex(path);
        }
        return openSingle(path);
    }

    private static ShardedCheckpoint openSingle(Path file) {
        SafetensorsReader reader = SafetensorsReader.open(file);
        Map<String, SafetensorsReader> byTensor = new LinkedHashMap<>();
        for (String name : reader.names()) {
            byTensor.put(name, reader);
        }
        return new ShardedCheckpoint(file, reader.metadata(), byTensor, List.of(reader));
    }

    private static ShardedCheckpoint openIndex(Path index) {
        JsonNode root;
        try {
            root = Header.JSON.readTree(Files.readAllBytes(index));
        } catch (NoSuchFileException e) {
            throw new KilnException("Checkpoint index " + index + " does not exist", e);
        } catch (JacksonException e) {
            throw new CheckpointFormatException(index, null, "the index is not valid JSON: " + e.getOriginalMessage(),
                    e);
        } catch (IOException e) {
            throw new KilnException("Cannot read checkpoint index " + index + ": " + e, e);
        }
        if (root == null || !root.isObject()) {
            throw new CheckpointFormatException(index, "the index must be a JSON object");
        }
        JsonNode weightMap = root.get("weight_map");
        if (weightMap == null || !weightMap.isObject()) {
            throw new CheckpointFormatException(index, "the index has no weight_map object");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        JsonNode meta = root.get("metadata");
        if (meta != null && !meta.isNull()) {
            if (!meta.isObject()) {
                throw new CheckpointFormatException(index, "the index's metadata must be an object but is " + meta);
            }
            // Hugging Face writes numbers here (total_size); they are kept as their JSON text.
            meta.fields().forEachRemaining(e -> metadata.put(e.getKey(),
                    e.getValue().isValueNode() ? e.getValue().asText() : e.getValue().toString()));
        }
        Path folder = index.toAbsolutePath().normalize().getParent();
        Map<String, Path> fileOf = new LinkedHashMap<>();
        Iterator<Map.Entry<String, JsonNode>> it = weightMap.fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            fileOf.put(e.getKey(), shardPath(index, folder, e.getKey(), e.getValue()));
        }
        Map<Path, SafetensorsReader> open = new LinkedHashMap<>();
        try {
            Map<String, SafetensorsReader> byTensor = new LinkedHashMap<>();
            for (Map.Entry<String, Path> e : fileOf.entrySet()) {
                Path shard = e.getValue();
                SafetensorsReader reader = open.get(shard);
                if (reader == null) {
                    if (!Files.exists(shard)) {
                        throw new CheckpointFormatException(index, e.getKey(), "its shard " + shard
                                + " does not exist");
                    }
                    reader = SafetensorsReader.open(shard);
                    open.put(shard, reader);
                }
                if (!reader.contains(e.getKey())) {
                    throw new CheckpointFormatException(index, e.getKey(), "the index places it in " + shard
                            + " but that shard has no such tensor");
                }
                byTensor.put(e.getKey(), reader);
            }
            return new ShardedCheckpoint(index, metadata, byTensor, new ArrayList<>(open.values()));
        } catch (RuntimeException e) {
            open.values().forEach(ShardedCheckpoint::closeQuietly);
            throw e;
        }
    }

    /** The shard path of a weight_map entry, refusing anything outside the index's folder. */
    private static Path shardPath(Path index, Path folder, String tensor, JsonNode value) {
        if (!value.isTextual() || value.textValue().isEmpty()) {
            throw new CheckpointFormatException(index, tensor, "weight_map must give a shard file name but gives "
                    + value);
        }
        String name = value.textValue();
        Path relative;
        try {
            relative = Path.of(name);
        } catch (InvalidPathException e) {
            throw new CheckpointFormatException(index, tensor, "weight_map gives an invalid file name \"" + name
                    + "\"", e);
        }
        boolean escapes = relative.isAbsolute() || name.startsWith("/") || name.startsWith("\\")
                || name.contains("\\");
        for (Path part : relative) {
            escapes |= part.toString().equals("..");
        }
        Path resolved = folder.resolve(relative).normalize();
        if (escapes || !resolved.startsWith(folder)) {
            throw new CheckpointFormatException(index, tensor, "weight_map points to \"" + name
                    + "\", outside the index's folder " + folder + "; shards must be files in that folder");
        }
        return resolved;
    }

    /** The index or single file this checkpoint was opened from. */
    public Path source() {
        return source;
    }

    /**
     * The index's {@code metadata} (values as text, e.g. {@code total_size}) or, for a single file, its
     * {@code __metadata__}.
     */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** All tensor names, in index (or file) order. */
    public List<String> names() {
        return List.copyOf(byTensor.keySet());
    }

    /** Whether the checkpoint has a tensor called {@code name}. */
    public boolean contains(String name) {
        return byTensor.containsKey(name);
    }

    /** The shard files, in the order first referenced. */
    public List<Path> shards() {
        List<Path> out = new ArrayList<>();
        for (SafetensorsReader r : readers) {
            out.add(r.file());
        }
        return out;
    }

    /** The reader of the shard that holds {@code name}. */
    public SafetensorsReader reader(String name) {
        SafetensorsReader r = byTensor.get(name);
        if (r == null) {
            throw new KilnException("Checkpoint " + source + " has no tensor '" + name + "'");
        }
        return r;
    }

    /** The header entry of {@code name} (offsets relative to its shard's data section). */
    public TensorInfo info(String name) {
        return reader(name).info(name);
    }

    /** The tensor as an NDArray; see {@link SafetensorsReader#read(String, NDManager)}. */
    public NDArray read(String name, NDManager manager) {
        return reader(name).read(name, manager);
    }

    /** The tensor as float32 values; see {@link SafetensorsReader#readFloats(String)}. */
    public float[] readFloats(String name) {
        return reader(name).readFloats(name);
    }

    private static void closeQuietly(SafetensorsReader r) {
        try {
            r.close();
        } catch (RuntimeException ignored) {
            // Already failing with the error that matters.
        }
    }

    /** Closes every shard. */
    @Override
    public void close() {
        RuntimeException first = null;
        for (SafetensorsReader r : readers) {
            try {
                r.close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
