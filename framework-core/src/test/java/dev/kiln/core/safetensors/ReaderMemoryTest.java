package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.KilnException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Reads leave no direct or mapped Java buffer behind (the buffers are freed at once, not at the next GC), a JVM with
 * a 16 MB direct-memory limit reads a 64 MB tensor 20 times, and row ranges read exactly the rows asked for.
 */
class ReaderMemoryTest {

    private static final int BIG = 16 << 20; // float32 elements: 64 MB

    @TempDir
    static Path dir;

    static Path big;
    static NDManager manager;

    @BeforeAll
    static void setUp() {
        manager = NDManager.newBaseManager();
        big = dir.resolve("big.safetensors");
        // Values are a simple function of the index so a read can be checked at a few spots without a 64 MB copy.
        ByteBuffer bytes = ByteBuffer.allocate(BIG * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < BIG; i++) {
            bytes.putFloat(i * 4, i * 0.5f);
        }
        try (SafetensorsWriter w = SafetensorsWriter.create(big, Map.of(),
                List.of(new TensorSpec("w", DType.F32, new long[] {4096, BIG / 4096})))) {
            w.write("w", bytes);
            w.commit();
        }
    }

    @AfterAll
    static void tearDown() {
        manager.close();
    }

    private static BufferPoolMXBean pool(String name) {
        for (BufferPoolMXBean p : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
            if (p.getName().equals(name)) {
                return p;
            }
        }
        throw new AssertionError("no buffer pool " + name);
    }

    @Test
    void repeatedReadsLeaveNoDirectOrMappedBuffers() {
        long directBefore = pool("direct").getMemoryUsed();
        long mappedBefore = pool("mapped").getMemoryUsed();
        try (SafetensorsReader reader = SafetensorsReader.open(big)) {
            for (int round = 0; round < 20; round++) {
                try (NDManager sub = manager.newSubManager()) {
                    NDArray a = reader.read("w", sub);
                    assertEquals(BIG - 1, a.get(4095, BIG / 4096 - 1).getFloat() * 2, 0f);
                }
            }
        }
        // Without deterministic freeing 20 x 64 MB would sit here until a GC that an idle heap never triggers.
        assertTrue(pool("direct").getMemoryUsed() - directBefore < (8 << 20),
                "direct memory grew by " + (pool("direct").getMemoryUsed() - directBefore));
        assertEquals(mappedBefore, pool("mapped").getMemoryUsed(), "mapped memory left behind");
    }

    @Test
    void aJvmWithA16MegabyteDirectLimitReadsA64MegabyteTensorTwentyTimes() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Path log = dir.resolve("child.log");
        Process p = new ProcessBuilder(java, "-XX:MaxDirectMemorySize=16m", "-Xmx256m", "-Dai.djl.offline=true",
                "-cp", System.getProperty("java.class.path"), ReadLoop.class.getName(), big.toString(), "20")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child timed out");
        String out = Files.readString(log);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("read 20 times"), out);
    }

    /** The child process of the test above. */
    public static final class ReadLoop {
        public static void main(String[] args) {
            int rounds = Integer.parseInt(args[1]);
            try (NDManager m = NDManager.newBaseManager(); SafetensorsReader r = SafetensorsReader.open(Path.of(
                    args[0]))) {
                for (int i = 0; i < rounds; i++) {
                    try (NDManager sub = m.newSubManager()) {
                        NDArray a = r.read("w", sub);
                        NDArray block = r.readRows("w", 100, 1100, sub);
                        if (a.getShape().get(0) != 4096 || block.getShape().get(0) != 1000) {
                            throw new AssertionError(a.getShape() + " " + block.getShape());
                        }
                    }
                }
            }
            System.out.println("read " + rounds + " times");
        }
    }

    @Test
    void rowRangesMatchTheRowsOfTheWholeTensorForEveryLoadedDtype() {
        Random random = new Random(3);
        long[] shape = {7, 3, 5};
        int n = 7 * 3 * 5;
        Path file = dir.resolve("rows.safetensors");
        List<DType> types = List.of(DType.F32, DType.BF16, DType.F16, DType.I16, DType.I64);
        Map<DType, byte[]> data = new java.util.LinkedHashMap<>();
        try (SafetensorsWriter w = SafetensorsWriter.create(file, Map.of(), types.stream()
                .map(t -> new TensorSpec(t.code(), t, shape)).toList())) {
            for (DType t : types) {
                byte[] bytes = SafetensorsRoundTripTest.randomBytes(t, n, random);
                data.put(t, bytes);
                w.write(t.code(), ByteBuffer.wrap(bytes));
            }
            w.commit();
        }
        try (SafetensorsReader reader = SafetensorsReader.open(file); NDManager sub = manager.newSubManager()) {
            for (int chunk : new int[] {8, 1 << 30}) {
                reader.chunkBytes(chunk);
                for (DType t : types) {
                    NDArray whole = reader.read(t.code(), sub);
                    for (long[] rows : new long[][] {{0, 7}, {2, 5}, {6, 7}, {3, 3}}) {
                        NDArray part = reader.readRows(t.code(), rows[0], rows[1], sub);
                        assertArrayEquals(new long[] {rows[1] - rows[0], 3, 5}, part.getShape().getShape());
                        assertEquals(whole.getDataType(), part.getDataType());
                        NDArray expected = whole.get(rows[0] + ":" + rows[1]);
                        assertArrayEquals(bytesOf(expected), bytesOf(part), t + " rows " + rows[0] + ".."
                                + rows[1]);
                    }
                }
            }
            // The whole tensor itself against an independent decode of the raw little-endian bytes (F32, I16).
            ByteBuffer f32 = ByteBuffer.wrap(data.get(DType.F32)).order(ByteOrder.LITTLE_ENDIAN);
            float[] got = reader.read("F32", sub).toFloatArray();
            ByteBuffer i16 = ByteBuffer.wrap(data.get(DType.I16)).order(ByteOrder.LITTLE_ENDIAN);
            NDArray ints = reader.read("I16", sub);
            assertEquals(DataType.INT32, ints.getDataType());
            int[] gotInts = ints.toIntArray();
            for (int i = 0; i < n; i++) {
                assertEquals(Float.floatToRawIntBits(f32.getFloat(i * 4)), Float.floatToRawIntBits(got[i]));
                assertEquals(i16.getShort(i * 2), gotInts[i]);
            }
            KilnException e = assertThrows(KilnException.class, () -> reader.readRows("F32", 5, 8, sub));
            assertTrue(e.getMessage().contains("'F32'") && e.getMessage().contains("[5, 8)"), e.getMessage());
        }
    }

    private static byte[] bytesOf(NDArray a) {
        ByteBuffer b = a.toByteBuffer();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }
}
