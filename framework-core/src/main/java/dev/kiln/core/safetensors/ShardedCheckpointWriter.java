package dev.kiln.core.safetensors;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.spi.KilnException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Writes a checkpoint split into safetensors shards of at most a given number of tensor bytes, plus a Hugging Face
 * style {@code <base>.safetensors.index.json}.
 *
 * <p>Tensors are packed into shards in declaration order; a shard is closed when the next tensor would push its data
 * past the limit (the limit counts tensor bytes, as Hugging Face's {@code max_shard_size} does; a tensor larger than
 * the limit gets a shard of its own). Shards are named {@code <base>-00001-of-00003.safetensors}. Each shard and the
 * index are written through {@link AtomicFiles}; the index is renamed into place last, after every shard, so an index
 * never names a shard that is missing. Shards of an older checkpoint with a different shard count are not deleted.
 * The index always exists, even for one shard, so readers need a single code path.
 */
public final class ShardedCheckpointWriter implements AutoCloseable {

    private final Path indexFile;
    private final Map<String, String> metadata;
    private final List<SafetensorsWriter> shards;
    private final Map<String, SafetensorsWriter> byTensor;
    private final Map<String, String> weightMap;
    private final long totalSize;
    private boolean finished;

    private ShardedCheckpointWriter(Path indexFile, Map<String, String> metadata, List<SafetensorsWriter> shards,
            Map<String, SafetensorsWriter> byTensor, Map<String, String> weightMap, long totalSize) {
        this.indexFile = indexFile;
        this.metadata = metadata;
        this.shards = shards;
        this.byTensor = byTensor;
        this.weightMap = weightMap;
        this.totalSize = totalSize;
    }

    /**
     * Plans the shards and starts each one's temporary file.
     *
     * @param directory the output folder
     * @param baseName file name stem, e.g. {@code "model"}
     * @param maxShardBytes the most tensor bytes per shard (positive)
     * @param metadata strings written to every shard's {@code __metadata__} and to the index's {@code metadata}
     * @param specs every tensor, in the order they are laid out
     */
    public static ShardedCheckpointWriter create(Path directory, String baseName, long maxShardBytes,
            Map<String, String> metadata, List<TensorSpec> specs) {
        Path indexFile = directory.resolve(baseName + ".safetensors.index.json");
        if (maxShardBytes <= 0) {
            throw new KilnException("Checkpoint " + indexFile + ": the shard size limit must be positive but is "
                    + maxShardBytes);
        }
        if (specs.isEmpty()) {
            throw new CheckpointFormatException(indexFile, "a sharded checkpoint needs at least one tensor");
        }
        List<List<TensorSpec>> plan = new ArrayList<>();
        List<TensorSpec> current = new ArrayList<>();
        long currentBytes = 0;
        long total = 0;
        for (TensorSpec spec : specs) {
            long length;
            try {
                length = spec.byteLength();
                total = Math.addExact(total, length);
            } catch (ArithmeticException e) {
                throw new CheckpointFormatException(indexFile, spec.name(), "its size overflows a 64-bit byte count",
                        e);
            }
            if (!current.isEmpty() && currentBytes + length > maxShardBytes) {
                plan.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(spec);
            currentBytes += length;
        }
        plan.add(current);

        List<SafetensorsWriter> shards = new ArrayList<>();
        Map<String, SafetensorsWriter> byTensor = new HashMap<>();
        Map<String, String> weightMap = new TreeMap<>();
        try {
            for (int i = 0; i < plan.size(); i++) {
                String fileName = String.format("%s-%05d-of-%05d.safetensors", baseName, i + 1, plan.size());
                SafetensorsWriter w = SafetensorsWriter.create(directory.resolve(fileName), metadata, plan.get(i));
                shards.add(w);
                for (TensorSpec spec : plan.get(i)) {
                    if (byTensor.put(spec.name(), w) != null) {
                        throw new CheckpointFormatException(indexFile, spec.name(), "the tensor is listed twice");
                    }
                    weightMap.put(spec.name(), fileName);
                }
            }
        } catch (RuntimeException e) {
            shards.forEach(SafetensorsWriter::close);
            throw e;
        }
        return new ShardedCheckpointWriter(indexFile, metadata, shards, byTensor, weightMap, total);
    }

    /** The index file this writer produces. */
    public Path indexFile() {
        return indexFile;
    }

    /** The shard files, in order. */
    public List<Path> shardFiles() {
        List<Path> out = new ArrayList<>();
        for (SafetensorsWriter w : shards) {
            out.add(w.target());
        }
        return out;
    }

    /** Writes a declared tensor; see {@link SafetensorsWriter#write(String, NDArray)}. */
    public void write(String name, NDArray array) {
        shardOf(name).write(name, array);
    }

    /** Writes a declared tensor from raw bytes; see {@link SafetensorsWriter#write(String, ByteBuffer...)}. */
    public void write(String name, ByteBuffer... chunks) {
        shardOf(name).write(name, chunks);
    }

    /** Writes part of a declared tensor; see {@link SafetensorsWriter#writeSlice(String, long, ByteBuffer)}. */
    public void writeSlice(String name, long offset, ByteBuffer bytes) {
        shardOf(name).writeSlice(name, offset, bytes);
    }

    /** Writes a declared float tensor; see {@link SafetensorsWriter#writeFloats(String, float[])}. */
    public void writeFloats(String name, float[] values) {
        shardOf(name).writeFloats(name, values);
    }

    /** Sends every shard's bytes written so far to the disk ahead of {@link #commit()}. */
    public void flushEarly() {
        for (SafetensorsWriter w : shards) {
            w.flushEarly();
        }
    }

    /**
     * Checks that every tensor was written, commits every shard and then the index. If any tensor is missing nothing
     * is committed.
     */
    public void commit() {
        if (finished) {
            throw new IllegalStateException("The write of " + indexFile + " is already finished");
        }
        for (SafetensorsWriter w : shards) {
            List<String> missing = w.unwritten();
            if (!missing.isEmpty()) {
                throw new CheckpointFormatException(indexFile, missing.get(0), "declared but never written");
            }
        }
        finished = true;
        try {
            for (SafetensorsWriter w : shards) {
                w.commit();
            }
        } finally {
            shards.forEach(SafetensorsWriter::close);
        }
        ObjectNode root = Header.JSON.createObjectNode();
        ObjectNode meta = root.putObject("metadata");
        if (metadata != null) {
            metadata.forEach(meta::put);
        }
        meta.put("total_size", totalSize);
        ObjectNode map = root.putObject("weight_map");
        weightMap.forEach(map::put);
        try {
            AtomicFiles.write(indexFile, Header.JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root));
        } catch (JacksonException e) {
            throw new CheckpointFormatException(indexFile, null, "cannot encode the index: " + e.getOriginalMessage(),
                    e);
        }
    }

    /** Abandons every uncommitted shard; the index is not touched. */
    @Override
    public void close() {
        finished = true;
        shards.forEach(SafetensorsWriter::close);
    }

    private SafetensorsWriter shardOf(String name) {
        SafetensorsWriter w = byTensor.get(name);
        if (w == null) {
            throw new CheckpointFormatException(indexFile, name, "the tensor was not declared when the writer was"
                    + " created");
        }
        return w;
    }
}
