package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Shards plus index written by Kiln and read back as one view; indexes that escape their folder are refused. */
class ShardedCheckpointTest {

    @TempDir
    Path dir;

    @Test
    void threeShardsRoundTripThroughTheIndex() throws IOException {
        Random random = new Random(21);
        List<TensorSpec> specs = new ArrayList<>();
        Map<String, float[]> values = new LinkedHashMap<>();
        // 6 tensors of 40 bytes with a 90-byte limit: two per shard, three shards.
        for (int i = 0; i < 6; i++) {
            String name = "layers." + i + ".weight";
            specs.add(new TensorSpec(name, i % 2 == 0 ? DType.F32 : DType.BF16, new long[] {i % 2 == 0 ? 10 : 20}));
            float[] v = new float[i % 2 == 0 ? 10 : 20];
            for (int j = 0; j < v.length; j++) {
                v[j] = i % 2 == 0 ? (float) random.nextGaussian()
                        : FloatBits.bf16ToFloat((short) (0x3c00 + random.nextInt(0x800))); // exact in bf16
            }
            values.put(name, v);
        }
        Path out = dir.resolve("ckpt");
        try (ShardedCheckpointWriter w = ShardedCheckpointWriter.create(out, "model", 90, Map.of("format", "pt"),
                specs)) {
            assertEquals(3, w.shardFiles().size());
            values.forEach(w::writeFloats);
            w.commit();
        }
        Path index = out.resolve(ShardedCheckpoint.INDEX_NAME);
        assertTrue(Files.exists(index));
        JsonNode json = new ObjectMapper().readTree(index.toFile());
        assertEquals(240, json.get("metadata").get("total_size").asLong());
        assertEquals("model-00002-of-00003.safetensors", json.get("weight_map").get("layers.2.weight").asText());
        assertEquals("model-00003-of-00003.safetensors", json.get("weight_map").get("layers.5.weight").asText());
        try (var files = Files.list(out)) {
            assertEquals(4, files.count(), "three shards and the index, no temporary files left");
        }
        for (String opened : new String[] {"index", "dir"}) {
            try (ShardedCheckpoint c = ShardedCheckpoint.open(opened.equals("dir") ? out : index)) {
                assertEquals(3, c.shards().size());
                assertEquals(values.keySet(), new java.util.HashSet<>(c.names()));
                assertEquals("240", c.metadata().get("total_size"));
                for (Map.Entry<String, float[]> e : values.entrySet()) {
                    assertArrayEquals(e.getValue(), c.readFloats(e.getKey()), e.getKey());
                }
                assertEquals("pt", c.reader("layers.0.weight").metadata().get("format"));
                assertEquals(DType.BF16, c.info("layers.1.weight").dtype());
            }
        }
        // A single file opens through the same class.
        Path single = dir.resolve("single.safetensors");
        try (SafetensorsWriter w = SafetensorsWriter.create(single, Map.of("a", "b"), specs.subList(0, 1))) {
            w.writeFloats("layers.0.weight", values.get("layers.0.weight"));
            w.commit();
        }
        try (ShardedCheckpoint c = ShardedCheckpoint.open(single)) {
            assertEquals(List.of("layers.0.weight"), c.names());
            assertEquals(Map.of("a", "b"), c.metadata());
        }
    }

    @Test
    void aTensorLargerThanTheLimitGetsItsOwnShard() {
        List<TensorSpec> specs = List.of(new TensorSpec("small", DType.U8, new long[] {10}),
                new TensorSpec("big", DType.U8, new long[] {500}), new TensorSpec("tail", DType.U8, new long[] {10}));
        try (ShardedCheckpointWriter w = ShardedCheckpointWriter.create(dir, "m", 100, Map.of(), specs)) {
            assertEquals(3, w.shardFiles().size());
        }
        try (var files = Files.list(dir)) {
            assertEquals(0, files.count(), "an abandoned writer leaves nothing behind");
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void incompleteWritesCommitNothing() {
        List<TensorSpec> specs = List.of(new TensorSpec("a", DType.U8, new long[] {4}),
                new TensorSpec("b", DType.U8, new long[] {4}));
        try (ShardedCheckpointWriter w = ShardedCheckpointWriter.create(dir, "model", 4, Map.of(), specs)) {
            w.write("a", java.nio.ByteBuffer.wrap(new byte[4]));
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, w::commit);
            assertTrue(e.getMessage().contains("'b'"), e.getMessage());
        }
        assertFalse(Files.exists(dir.resolve("model-00001-of-00002.safetensors")));
        assertFalse(Files.exists(dir.resolve("model.safetensors.index.json")));
    }

    private Path indexWith(String shardName) throws IOException {
        Path folder = Files.createDirectories(dir.resolve("evil"));
        RawFiles.write(folder.resolve("ok.safetensors"),
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1]);
        RawFiles.write(dir.resolve("outside.safetensors"),
                "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1]);
        Path index = folder.resolve(ShardedCheckpoint.INDEX_NAME);
        String json = new ObjectMapper().writeValueAsString(Map.of("weight_map",
                new java.util.TreeMap<>(Map.of("a", "ok.safetensors", "b", shardName))));
        Files.writeString(index, json);
        return index;
    }

    @Test
    void weightMapEntriesOutsideTheFolderAreRefused() throws IOException {
        Path outside = dir.resolve("outside.safetensors").toAbsolutePath();
        for (String escape : new String[] {"../outside.safetensors", outside.toString(), "sub/../../outside.safetensors",
            "./../outside.safetensors"}) {
            Path index = indexWith(escape);
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                    () -> ShardedCheckpoint.open(index));
            assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains("outside the index's folder")
                    && e.getMessage().contains(escape) && e.getMessage().contains(index.toString()), e.getMessage());
        }
        // The same index with a name inside the folder works (the refusal above is about the path, not the file).
        Files.copy(dir.resolve("outside.safetensors"), dir.resolve("evil/inside.safetensors"));
        try (ShardedCheckpoint c = ShardedCheckpoint.open(indexWith("inside.safetensors"))) {
            assertEquals(2, c.names().size());
        }
    }

    @Test
    void indexNamingAMissingTensorOrShardIsRefused() throws IOException {
        Path index = indexWith("ok.safetensors");
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                () -> ShardedCheckpoint.open(index));
        assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains("no such tensor"), e.getMessage());
        Path index2 = indexWith("gone.safetensors");
        e = assertThrows(CheckpointFormatException.class, () -> ShardedCheckpoint.open(index2));
        assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains("does not exist"), e.getMessage());
        Files.writeString(index2, "{\"metadata\":{}}");
        e = assertThrows(CheckpointFormatException.class, () -> ShardedCheckpoint.open(index2));
        assertTrue(e.getMessage().contains("no weight_map"), e.getMessage());
    }
}
