package dev.kiln.core.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The loader on the stored formats of structured, low-rank and low-rank-sparse, with hand-computed tensors. */
class CompressedCheckpointsTest {
    @TempDir
    Path dir;

    private static Map<String, Object> entry(List<Long> shape, String format, Map<String, String> stored) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("shape", shape);
        e.put("dtype", "F32");
        e.put("stored", stored);
        e.put("metadata", Map.of("format", format));
        return e;
    }

    private Path write(NDManager m, Map<String, Object> tensors, Map<String, NDArray> arrays) throws Exception {
        Map<String, Object> record = new LinkedHashMap<>();
        record.put("compressor", "hand");
        record.put("params", Map.of());
        record.put("names", List.copyOf(tensors.keySet()));
        record.put("tensors", tensors);
        Path file = dir.resolve("hand.safetensors");
        SafetensorsWriter.save(file, Map.of(CompressPipeline.METADATA_KEY, Json.MAPPER.writeValueAsString(record)),
                arrays);
        return file;
    }

    @Test
    void rebuildsStructuredLowRankAndLowRankSparse() throws Exception {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            arrays.put("s.rows", m.create(new float[] {1, 2, 3, 4}, new Shape(2, 2)));
            arrays.put("s.row_index", m.create(new long[] {0, 2}));
            arrays.put("l.u", m.create(new float[] {1, 2}, new Shape(2, 1)));
            arrays.put("l.v", m.create(new float[] {1, 0, -1}, new Shape(1, 3)));
            arrays.put("r.u", m.create(new float[] {1, 2}, new Shape(2, 1)));
            arrays.put("r.v", m.create(new float[] {1, 0, -1}, new Shape(1, 3)));
            arrays.put("r.residual", m.create(new float[] {5, 7}));
            arrays.put("r.residual_index", m.create(new int[] {1, 4}));
            Map<String, Object> tensors = new LinkedHashMap<>();
            tensors.put("s", entry(List.of(4L, 2L), "structured", Map.of(".rows", "s.rows", ".row_index",
                    "s.row_index")));
            tensors.put("l", entry(List.of(2L, 3L), "low-rank", Map.of(".u", "l.u", ".v", "l.v")));
            tensors.put("r", entry(List.of(2L, 3L), "low-rank-sparse", Map.of(".u", "r.u", ".v", "r.v",
                    ".residual", "r.residual", ".residual_index", "r.residual_index")));
            Path file = write(m, tensors, arrays);
            Map<String, NDArray> loaded = CompressedCheckpoints.load(file, m);
            assertEquals(List.of("s", "l", "r"), List.copyOf(loaded.keySet()));
            assertArrayEquals(new float[] {1, 2, 0, 0, 3, 4, 0, 0}, loaded.get("s").toFloatArray());
            assertEquals(new Shape(4, 2), loaded.get("s").getShape());
            assertArrayEquals(new float[] {1, 0, -1, 2, 0, -2}, loaded.get("l").toFloatArray());
            assertArrayEquals(new float[] {1, 5, -1, 2, 7, -2}, loaded.get("r").toFloatArray());
        }
    }

    @Test
    void unknownFormatsAndMissingPartsNameTheTensor() throws Exception {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> arrays = Map.of("w.x", m.create(new float[] {1, 2}, new Shape(1, 2)));
            Path odd = write(m, Map.of("w", entry(List.of(1L, 2L), "fp4", Map.of(".x", "w.x"))), arrays);
            KilnException format = assertThrows(KilnException.class, () -> CompressedCheckpoints.load(odd, m));
            assertTrue(format.getMessage().contains("'w'") && format.getMessage().contains("'fp4'"),
                    format.getMessage());
            Path missing = write(m, Map.of("w", entry(List.of(1L, 2L), "int8-symmetric-per-channel",
                    Map.of(".q", "w.x", ".scale", "w.scale"))), arrays);
            KilnException part = assertThrows(KilnException.class, () -> CompressedCheckpoints.load(missing, m));
            assertTrue(part.getMessage().contains("w.scale"), part.getMessage());
        }
    }
}
