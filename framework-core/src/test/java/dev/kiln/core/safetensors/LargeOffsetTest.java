package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Offsets beyond 2^31 on a sparse ~2 GB+ file: the arithmetic must be 64-bit end to end. */
class LargeOffsetTest {

    @TempDir
    Path dir;

    static final long PAD = (1L << 31) + 1000; // past Integer.MAX_VALUE, not a multiple of anything convenient

    @Test
    void tensorBeyondTwoGigabytesReadsBack() throws Exception {
        long padBytes = PAD + (1L << 30); // ~3 GB of zero bytes that are never written
        String header = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[" + padBytes + "],\"data_offsets\":[0," + padBytes
                + "]},\"far\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[" + padBytes + ","
                + (padBytes + 16) + "]}}";
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        float[] values = {1.5f, -2.25f, 3e-7f, Float.NaN};
        ByteBuffer far = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            far.putFloat(v);
        }
        Path file = dir.resolve("sparse.safetensors");
        long dataStart = 8 + json.length;
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.setLength(dataStart + padBytes + 16);
            raf.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(json.length).array());
            raf.write(json);
            raf.seek(dataStart + padBytes);
            raf.write(far.array());
        }
        try (SafetensorsReader r = SafetensorsReader.open(file); NDManager m = NDManager.newBaseManager()) {
            TensorInfo info = r.info("far");
            assertEquals(padBytes, info.begin());
            assertTrue(info.begin() > Integer.MAX_VALUE);
            assertArrayEquals(far.array(), r.readBytes("far"));
            float[] got = r.readFloats("far");
            assertEquals(Float.floatToRawIntBits(values[3]), Float.floatToRawIntBits(got[3]));
            assertArrayEquals(Arrays.copyOf(values, 3), Arrays.copyOf(got, 3));
            ByteBuffer mapped = r.map("far");
            assertEquals(-2.25f, mapped.getFloat(4));
            NDArray a = r.read("far", m);
            assertArrayEquals(Arrays.copyOf(values, 3), Arrays.copyOf(a.toFloatArray(), 3));

            // The 3 GiB tensor itself: no single buffer, but chunked mappings of at most 1 GiB each.
            CheckpointFormatException tooBig = assertThrows(CheckpointFormatException.class, () -> r.map("pad"));
            assertTrue(tooBig.getMessage().contains("'pad'") && tooBig.getMessage().contains("mapChunks"));
            assertThrows(CheckpointFormatException.class, () -> r.readBytes("pad"));
            List<ByteBuffer> chunks = r.mapChunks("pad");
            assertEquals(4, chunks.size(), "3 GiB + 1000 bytes in 1 GiB chunks");
            long total = 0;
            for (ByteBuffer c : chunks) {
                total += c.remaining();
            }
            assertEquals(padBytes, total);
            assertEquals(1000, chunks.get(3).remaining());
            assertEquals(0, chunks.get(3).get(999));
        }
    }

    @Test
    void writerHeaderOffsetsArePast2To31() {
        // Header arithmetic of the writer, checked without writing gigabytes: encode, then parse back.
        List<TensorSpec> specs = List.of(new TensorSpec("a", DType.F32, new long[] {1L << 29, 2}),
                new TensorSpec("b", DType.BF16, new long[] {3, 1L << 30}), new TensorSpec("c", DType.I8,
                        new long[] {5}));
        Path file = dir.resolve("virtual.safetensors");
        byte[] json = Header.encode(file, Map.of("k", "v"), specs);
        assertEquals(0, json.length % 8);
        long a = 4L << 30;
        long b = 6L << 30;
        Header h = Header.parse(file, json, a + b + 5);
        assertEquals(List.of(new TensorInfo("a", DType.F32, new long[] {1L << 29, 2}, 0, a),
                new TensorInfo("b", DType.BF16, new long[] {3, 1L << 30}, a, a + b),
                new TensorInfo("c", DType.I8, new long[] {5}, a + b, a + b + 5)), h.tensors);
        assertEquals(Map.of("k", "v"), h.metadata);
    }
}
