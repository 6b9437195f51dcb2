package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each kind of malformed file is refused before any data is read, with its own message naming file and tensor. */
class MalformedFileTest {

    @TempDir
    Path dir;

    private int counter;

    private CheckpointFormatException refuse(Path file) {
        return assertThrows(CheckpointFormatException.class, () -> SafetensorsReader.open(file).close());
    }

    /** Asserts the file is refused with a message naming it, the tensor (when given) and the problem. */
    private void assertRefused(String header, byte[] data, String tensor, String... phrases) throws IOException {
        Path file = RawFiles.write(dir.resolve("bad" + (counter++) + ".safetensors"), header, data);
        assertRefused(file, tensor, phrases);
    }

    private void assertRefused(Path file, String tensor, String... phrases) {
        CheckpointFormatException e = refuse(file);
        String msg = e.getMessage();
        assertTrue(msg.contains(file.toString()), "names the file: " + msg);
        assertEquals(file, e.file());
        assertEquals(tensor, e.tensor(), msg);
        if (tensor != null) {
            assertTrue(msg.contains("'" + tensor + "'"), "names the tensor: " + msg);
        }
        for (String phrase : phrases) {
            assertTrue(msg.contains(phrase), "says '" + phrase + "': " + msg);
        }
    }

    @Test
    void headerLengthOverTheCapOrPastTheEnd() throws IOException {
        assertRefused(RawFiles.write(dir.resolve("huge.safetensors"), Long.MAX_VALUE, "{}", new byte[0]), null,
                "header length 9223372036854775807", "exceeds the cap");
        assertRefused(RawFiles.write(dir.resolve("unsigned.safetensors"), -1L, "{}", new byte[0]), null,
                "18446744073709551615", "exceeds the cap");
        String header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        Path whole = RawFiles.write(dir.resolve("whole.safetensors"), header, new byte[8]);
        byte[] bytes = Files.readAllBytes(whole);
        Path truncated = dir.resolve("truncated.safetensors");
        Files.write(truncated, java.util.Arrays.copyOf(bytes, 30));
        assertRefused(truncated, null, "runs past the end of the file");
        Path tiny = dir.resolve("tiny.safetensors");
        Files.write(tiny, new byte[] {1, 0, 0});
        assertRefused(tiny, null, "fewer than the 8-byte header length");
        // Within the file but above the cap: a sparse 120 MB file costs no disk.
        Path sparse = dir.resolve("sparse.safetensors");
        try (RandomAccessFile raf = new RandomAccessFile(sparse.toFile(), "rw")) {
            raf.setLength(120L << 20);
            raf.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(110L << 20).array());
        }
        assertRefused(sparse, null, "exceeds the cap of " + (100L << 20));
    }

    @Test
    void headerThatIsNotAJsonObject() throws IOException {
        assertRefused("{\"w\": {\"dtype\": ", new byte[0], null, "not valid JSON");
        assertRefused("[1, 2]", new byte[0], null, "must be a JSON object", "array");
        assertRefused("{} trailing", new byte[0], null, "not valid JSON");
        Path badUtf8 = dir.resolve("utf8.safetensors");
        ByteBuffer b = ByteBuffer.allocate(8 + 6).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(6).put(new byte[] {'{', '"', (byte) 0xc3, (byte) 0x28, '"', '}'});
        Files.write(badUtf8, b.array());
        assertRefused(badUtf8, null, "not valid JSON");
    }

    @Test
    void entriesMissingFieldsOrWithBadValues() throws IOException {
        assertRefused("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4], "a", "has no dtype");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", new byte[4], "a", "has no shape");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", new byte[4], "a", "has no data_offsets");
        assertRefused("{\"a\":7}", new byte[0], "a", "must be an object");
        assertRefused("{\"a\":{\"dtype\":\"F8_E9M9\",\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1], "a",
                "unknown dtype \"F8_E9M9\"");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,0]}}", new byte[0], "a",
                "negative dimension -3");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,0]}}", new byte[0], "a",
                "not a 64-bit integer");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,0]}}",
                new byte[0], "a", "not a 64-bit integer");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", new byte[4], "a",
                "must be [begin, end]");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", new byte[4], "a",
                "non-negative");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", new byte[4], "a",
                "end before they begin");
        assertRefused("{\"__metadata__\":{\"n\":3}}", new byte[0], null, "__metadata__", "'n'",
                "must be a string");
        assertRefused("{\"__metadata__\":[]}", new byte[0], null, "__metadata__ must be an object");
    }

    @Test
    void offsetsOutOfRangeOverlappingOrLeavingGaps() throws IOException {
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", new byte[8], "a",
                "out of range of the data section, which has 8 bytes");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12], "b",
                "overlap tensor 'a'");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", new byte[12], "b",
                "gap of 4 bytes");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[10], null,
                "cover 4 bytes", "has 10", "trailing");
        // The same region twice is an overlap too.
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4], "b", "overlap");
    }

    @Test
    void sizeThatDoesNotMatchOrOverflows() throws IOException {
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", new byte[20], "a",
                "needs 24 bytes", "hold 20");
        assertRefused("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,3]}}", new byte[3], "a",
                "needs 6 bytes");
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,0]}}",
                new byte[0], "a", "overflows a 64-bit byte count");
        // Element count fits but times 8 bytes does not.
        assertRefused("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}",
                new byte[0], "a", "overflows");
    }

    @Test
    void duplicateNamesAreRefusedNotOverwritten() throws IOException {
        assertRefused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", new byte[8], "a",
                "duplicate JSON key");
        assertRefused("{\"__metadata__\":{},\"__metadata__\":{}}", new byte[0], "__metadata__", "duplicate");
    }

    @Test
    void aWellFormedHandMadeFileIsAccepted() throws IOException {
        // Guards the cases above: they fail for their defect, not because the helper builds bad files.
        Path ok = RawFiles.write(dir.resolve("ok.safetensors"),
                "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[4,5]},"
                        + "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                        + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ",
                new byte[] {0, 0, (byte) 0x80, 0x3f, -5});
        try (SafetensorsReader r = SafetensorsReader.open(ok)) {
            assertEquals(java.util.List.of("b", "z", "a"), r.names());
            assertEquals(1f, r.readFloats("a")[0]);
            assertEquals(-5, r.readBytes("b")[0]);
            assertEquals(0, r.readBytes("z").length);
        }
    }

    @Test
    void unknownTensorAndMissingFileAreNamed() throws IOException {
        Path ok = RawFiles.write(dir.resolve("one.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        try (SafetensorsReader r = SafetensorsReader.open(ok)) {
            var e = assertThrows(dev.kiln.spi.KilnException.class, () -> r.info("nope"));
            assertTrue(e.getMessage().contains("'nope'") && e.getMessage().contains(ok.toString()));
        }
        Path missing = dir.resolve("missing.safetensors");
        var e = assertThrows(dev.kiln.spi.KilnException.class, () -> SafetensorsReader.open(missing));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("does not exist"));
    }
}
