package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.spi.KilnException;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Writing and reading every dtype bit-exactly, metadata, alignment, chunking, and interop with DJL's codec. */
class SafetensorsRoundTripTest {

    @TempDir
    Path dir;

    static NDManager manager;

    @BeforeAll
    static void engine() {
        manager = NDManager.newBaseManager();
    }

    @AfterAll
    static void release() {
        manager.close();
    }

    /** Special 16-bit patterns: zeros, ones, max, min normal, subnormals, infinities, NaNs. */
    static final short[] F16_SPECIAL = {0x0000, (short) 0x8000, 0x3c00, (short) 0xbc00, 0x7bff, 0x0400, 0x0001,
        0x03ff, (short) 0x8001, 0x7c00, (short) 0xfc00, 0x7e00, 0x7c01, (short) 0xfe00};
    static final short[] BF16_SPECIAL = {0x0000, (short) 0x8000, 0x3f80, (short) 0xbf80, 0x7f7f, 0x0080, 0x0001,
        0x007f, (short) 0x8001, 0x7f80, (short) 0xff80, 0x7fc0, 0x7f81, (short) 0xffc0};

    /** Random little-endian bytes valid for {@code dtype} (BOOL only 0/1; 16-bit floats start with the specials). */
    static byte[] randomBytes(DType dtype, int count, Random random) {
        ByteBuffer b = ByteBuffer.allocate(count * dtype.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count; i++) {
            switch (dtype) {
                case F64 -> b.putDouble(random.nextGaussian());
                case F32 -> b.putFloat((float) random.nextGaussian());
                case F16 -> b.putShort(i < F16_SPECIAL.length ? F16_SPECIAL[i] : (short) random.nextInt());
                case BF16 -> b.putShort(i < BF16_SPECIAL.length ? BF16_SPECIAL[i] : (short) random.nextInt());
                case I64 -> b.putLong(random.nextLong());
                case I32 -> b.putInt(random.nextInt());
                case I16 -> b.putShort((short) random.nextInt());
                case I8, U8 -> b.put((byte) random.nextInt());
                case BOOL -> b.put((byte) random.nextInt(2));
                default -> throw new AssertionError(dtype);
            }
        }
        return b.array();
    }

    @Test
    void everyDtypeRoundTripsBitExactWithMetadataAndAlignment() throws Exception {
        Random random = new Random(11);
        Map<String, byte[]> data = new LinkedHashMap<>();
        List<TensorSpec> specs = new ArrayList<>();
        for (DType dtype : DType.values()) {
            String name = "t." + dtype.code().toLowerCase();
            long[] shape = {3, 7};
            specs.add(new TensorSpec(name, dtype, shape));
            data.put(name, randomBytes(dtype, 21, random));
        }
        specs.add(new TensorSpec("scalar", DType.F32, new long[0]));
        data.put("scalar", randomBytes(DType.F32, 1, random));
        specs.add(new TensorSpec("empty", DType.I64, new long[] {0, 5}));
        data.put("empty", new byte[0]);
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("note", "ünïcode \"quoted\" \\ {braces}");
        Path file = dir.resolve("all.safetensors");
        try (SafetensorsWriter w = SafetensorsWriter.create(file, metadata, specs)) {
            assertEquals(0, w.dataStart() % 8);
            // Written out of declaration order: offsets are fixed by the header, not by write order.
            List<String> names = new ArrayList<>(data.keySet());
            java.util.Collections.reverse(names);
            for (String name : names) {
                w.write(name, ByteBuffer.wrap(data.get(name)));
            }
            assertFalse(Files.exists(file), "nothing at the target before commit");
            w.commit();
        }
        long headerLength = RawFiles.headerLength(file);
        assertEquals(0, (8 + headerLength) % 8, "data section starts at a multiple of 8");
        // An independent look at the header: Jackson on the raw bytes.
        byte[] all = Files.readAllBytes(file);
        JsonNode header = new ObjectMapper().readTree(Arrays.copyOfRange(all, 8, (int) (8 + headerLength)));
        assertEquals("pt", header.get("__metadata__").get("format").asText());
        long offset = 0;
        for (TensorSpec spec : specs) {
            JsonNode e = header.get(spec.name());
            assertEquals(spec.dtype().code(), e.get("dtype").asText());
            assertEquals(offset, e.get("data_offsets").get(0).asLong());
            int len = data.get(spec.name()).length;
            assertArrayEquals(data.get(spec.name()), Arrays.copyOfRange(all, (int) (8 + headerLength + offset),
                    (int) (8 + headerLength + offset + len)), spec.name());
            offset += len;
        }
        assertEquals(all.length, 8 + headerLength + offset);

        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            assertEquals(metadata, r.metadata());
            assertEquals(new ArrayList<>(data.keySet()), r.names());
            for (TensorSpec spec : specs) {
                assertArrayEquals(data.get(spec.name()), r.readBytes(spec.name()), spec.name());
                ByteBuffer mapped = r.map(spec.name());
                byte[] viaMap = new byte[mapped.remaining()];
                mapped.get(viaMap);
                assertArrayEquals(data.get(spec.name()), viaMap);
                assertEquals(spec, r.info(spec.name()).spec());
            }
        }
    }

    @Test
    void ndArraysLoadInTheirDtypeAndBf16AndI16AreWidenedExactly() throws Exception {
        Random random = new Random(12);
        List<TensorSpec> specs = new ArrayList<>();
        Map<String, byte[]> data = new LinkedHashMap<>();
        for (DType dtype : DType.values()) {
            specs.add(new TensorSpec(dtype.code(), dtype, new long[] {2, 3, 5}));
            data.put(dtype.code(), randomBytes(dtype, 30, random));
        }
        Path file = dir.resolve("nd.safetensors");
        try (SafetensorsWriter w = SafetensorsWriter.create(file, Map.of(), specs)) {
            data.forEach((name, bytes) -> w.write(name, ByteBuffer.wrap(bytes)));
            w.commit();
        }
        try (SafetensorsReader r = SafetensorsReader.open(file); NDManager sub = manager.newSubManager()) {
            for (DType dtype : DType.values()) {
                NDArray a = r.read(dtype.code(), sub);
                assertEquals(new Shape(2, 3, 5), a.getShape());
                ByteBuffer raw = ByteBuffer.wrap(data.get(dtype.code())).order(ByteOrder.LITTLE_ENDIAN);
                ByteBuffer got = a.toByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
                if (dtype == DType.BF16) {
                    assertEquals(DataType.FLOAT32, a.getDataType());
                    for (int i = 0; i < 30; i++) {
                        int expected = (raw.getShort(i * 2) & 0xffff) << 16;
                        assertEquals(expected, got.getInt(i * 4), "bf16 element " + i);
                    }
                } else if (dtype == DType.I16) {
                    assertEquals(DataType.INT32, a.getDataType());
                    for (int i = 0; i < 30; i++) {
                        assertEquals(raw.getShort(i * 2), got.getInt(i * 4), "i16 element " + i);
                    }
                } else {
                    assertEquals(dtype, DType.fromDjl(a.getDataType()));
                    byte[] bytes = new byte[got.remaining()];
                    got.get(bytes);
                    assertArrayEquals(data.get(dtype.code()), bytes, dtype.code());
                }
            }
            float[] bf = r.readFloats("BF16");
            float[] f16 = r.readFloats("F16");
            float[] f64 = r.readFloats("F64");
            ByteBuffer bfRaw = ByteBuffer.wrap(data.get("BF16")).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer f16Raw = ByteBuffer.wrap(data.get("F16")).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer f64Raw = ByteBuffer.wrap(data.get("F64")).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < 30; i++) {
                assertEquals(Float.intBitsToFloat((bfRaw.getShort(i * 2) & 0xffff) << 16), bf[i], 0f);
                double want = FloatBitsTest.halfReference(f16Raw.getShort(i * 2) & 0xffff);
                if (Double.isNaN(want)) {
                    assertTrue(Float.isNaN(f16[i]));
                } else {
                    assertEquals(want, f16[i], 0.0);
                }
                assertEquals((float) f64Raw.getDouble(i * 8), f64[i], 0f);
            }
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> r.readFloats("I32"));
            assertTrue(e.getMessage().contains("'I32'") && e.getMessage().contains("nd.safetensors"), e.getMessage());
        }
    }

    @Test
    void chunkedReadsAndWritesMatchTheWholeTensor() throws Exception {
        Random random = new Random(13);
        float[] values = new float[7 * 13];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextGaussian();
        }
        Path file = dir.resolve("chunks.safetensors");
        try (NDManager sub = manager.newSubManager()) {
            // A transposed view: the writer must store it in logical row-major order.
            NDArray source = sub.create(values, new Shape(13, 7)).transpose();
            List<TensorSpec> specs = List.of(new TensorSpec("w", DType.F32, new long[] {7, 13}),
                    new TensorSpec("h", DType.BF16, new long[] {7, 13}), new TensorSpec("i", DType.I16,
                            new long[] {91}));
            short[] shorts = new short[91];
            ByteBuffer shortBytes = ByteBuffer.allocate(182).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < 91; i++) {
                shorts[i] = (short) random.nextInt();
                shortBytes.putShort(shorts[i]);
            }
            shortBytes.flip();
            try (SafetensorsWriter w = SafetensorsWriter.create(file, Map.of(), specs)) {
                w.chunkBytes(24);
                w.write("w", source);
                w.write("h", source);
                // Raw bytes in three pieces.
                w.write("i", shortBytes.slice(0, 50), shortBytes.slice(50, 100), shortBytes.slice(150, 32));
                w.commit();
            }
            float[] transposed = new float[91];
            for (int r = 0; r < 7; r++) {
                for (int c = 0; c < 13; c++) {
                    transposed[r * 13 + c] = values[c * 7 + r];
                }
            }
            try (SafetensorsReader r = SafetensorsReader.open(file)) {
                r.chunkBytes(20);
                assertArrayEquals(transposed, r.readFloats("w"));
                float[] h = r.readFloats("h");
                for (int i = 0; i < 91; i++) {
                    assertEquals(FloatBitsTest.bf16Nearest(transposed[i]), FloatBits.floatToBf16(h[i]) & 0xffff);
                    assertEquals(Float.intBitsToFloat(FloatBitsTest.bf16Nearest(transposed[i]) << 16), h[i], 0f);
                }
                NDArray w = r.read("w", sub);
                assertEquals(new Shape(7, 13), w.getShape());
                assertArrayEquals(transposed, w.toFloatArray());
                NDArray hb = r.read("h", sub);
                assertEquals(DataType.FLOAT32, hb.getDataType());
                assertArrayEquals(h, hb.toFloatArray());
                int[] ints = r.read("i", sub).toIntArray();
                for (int i = 0; i < 91; i++) {
                    assertEquals(shorts[i], ints[i]);
                }
                List<ByteBuffer> chunks = r.mapChunks("w");
                assertEquals(19, chunks.size(), "364 bytes in 20-byte chunks of whole floats (5 per chunk)");
                ByteArrayOutputStream joined = new ByteArrayOutputStream();
                for (ByteBuffer c : chunks) {
                    byte[] b = new byte[c.remaining()];
                    c.get(b);
                    joined.write(b);
                }
                assertArrayEquals(r.readBytes("w"), joined.toByteArray());
                // Several runs in one array: F32 through positional reads, BF16 through the converting path; the
                // values are the runs of the whole tensor, in order, and a run past the end names the tensor.
                long[] firsts = {0, 40, 13, 90, 5};
                int[] counts = {3, 0, 27, 1, 9};
                for (String name : List.of("w", "h")) {
                    float[] whole = name.equals("w") ? transposed : h;
                    float[] want = new float[40];
                    int at = 0;
                    for (int i = 0; i < firsts.length; i++) {
                        System.arraycopy(whole, (int) firsts[i], want, at, counts[i]);
                        at += counts[i];
                    }
                    NDArray runs = r.readFlat(name, firsts, counts, sub);
                    assertEquals(new Shape(40), runs.getShape(), name);
                    assertArrayEquals(want, runs.toFloatArray(), name);
                }
                KilnException outside = assertThrows(KilnException.class,
                        () -> r.readFlat("w", new long[] {0, 88}, new int[] {2, 4}, sub));
                assertTrue(outside.getMessage().contains("'w'") && outside.getMessage().contains("[88, 92)"),
                        outside.getMessage());
            }
        }
    }

    @Test
    void ndArraysOfEveryDjlDtypeAreStoredAsTheyAreAndFloatsCanBeNarrowed() throws Exception {
        Random random = new Random(14);
        float[] values = new float[40];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) (random.nextGaussian() * 1000);
        }
        values[0] = 1f + 0x1p-11f; // an exact tie for F16
        values[1] = 70000f; // overflows F16
        values[2] = 3e-8f; // F16 subnormal range
        try (NDManager sub = manager.newSubManager()) {
            NDArray f32 = sub.create(values, new Shape(4, 10));
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            arrays.put("f32", f32);
            arrays.put("f64", f32.toType(DataType.FLOAT64, false));
            arrays.put("f16", f32.toType(DataType.FLOAT16, false));
            arrays.put("i64", f32.toType(DataType.INT64, false));
            arrays.put("i32", f32.toType(DataType.INT32, false));
            arrays.put("i8", sub.create(new byte[] {-128, -1, 0, 1, 127}));
            arrays.put("u8", sub.create(new byte[] {0, 1, 127, -128, -1}).toType(DataType.UINT8, false));
            arrays.put("bool", sub.create(new boolean[] {true, false, true}));
            Path file = dir.resolve("arrays.safetensors");
            SafetensorsWriter.save(file, Map.of("k", "v"), arrays);
            try (SafetensorsReader r = SafetensorsReader.open(file)) {
                assertEquals(Map.of("k", "v"), r.metadata());
                for (Map.Entry<String, NDArray> e : arrays.entrySet()) {
                    ByteBuffer want = e.getValue().toByteBuffer();
                    byte[] w = new byte[want.remaining()];
                    want.get(w);
                    assertArrayEquals(w, r.readBytes(e.getKey()), e.getKey());
                    assertEquals(DType.fromDjl(e.getValue().getDataType()), r.info(e.getKey()).dtype());
                }
            }
            // Narrowing on write: BF16 by Kiln, F16 by the engine; both compared with independent rounding.
            Path narrow = dir.resolve("narrow.safetensors");
            List<TensorSpec> specs = List.of(new TensorSpec("b", DType.BF16, new long[] {4, 10}),
                    new TensorSpec("h", DType.F16, new long[] {4, 10}),
                    new TensorSpec("d", DType.F64, new long[] {4, 10}));
            try (SafetensorsWriter w = SafetensorsWriter.create(narrow, Map.of(), specs)) {
                w.write("b", f32);
                w.write("h", f32);
                w.writeFloats("d", values);
                w.commit();
            }
            try (SafetensorsReader r = SafetensorsReader.open(narrow)) {
                ByteBuffer b = ByteBuffer.wrap(r.readBytes("b")).order(ByteOrder.LITTLE_ENDIAN);
                ByteBuffer h = ByteBuffer.wrap(r.readBytes("h")).order(ByteOrder.LITTLE_ENDIAN);
                ByteBuffer d = ByteBuffer.wrap(r.readBytes("d")).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < values.length; i++) {
                    assertEquals(FloatBitsTest.bf16Nearest(values[i]), b.getShort(i * 2) & 0xffff, "bf16 " + i);
                    assertEquals(FloatBitsTest.halfNearest(values[i]), h.getShort(i * 2) & 0xffff, "f16 " + i);
                    assertEquals((double) values[i], d.getDouble(i * 8), 0.0);
                }
            }
            Path bad = dir.resolve("bad.safetensors");
            try (SafetensorsWriter w = SafetensorsWriter.create(bad, Map.of(),
                    List.of(new TensorSpec("x", DType.F32, new long[] {2, 20})))) {
                CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> w.write("x", f32));
                assertTrue(e.getMessage().contains("'x'") && e.getMessage().contains("[4, 10]"), e.getMessage());
                CheckpointFormatException missing = assertThrows(CheckpointFormatException.class, w::commit);
                assertTrue(missing.getMessage().contains("never written"), missing.getMessage());
            }
            assertFalse(Files.exists(bad));
        }
    }

    @Test
    void djlWrittenFilesReadInKilnAndKilnFilesDecodeInDjl() throws Exception {
        Random random = new Random(15);
        try (NDManager sub = manager.newSubManager()) {
            NDList list = new NDList();
            Map<String, NDArray> byName = new LinkedHashMap<>();
            NDArray f32 = sub.randomNormal(new Shape(3, 4));
            byName.put("f32", f32);
            byName.put("f64", sub.randomNormal(new Shape(5)).toType(DataType.FLOAT64, false));
            byName.put("f16", sub.randomNormal(new Shape(2, 2)).toType(DataType.FLOAT16, false));
            byName.put("i64", sub.create(new long[] {random.nextLong(), -1, 0}));
            byName.put("i32", sub.create(new int[] {random.nextInt(), -7}));
            byName.put("i8", sub.create(new byte[] {-3, 4}));
            byName.put("u8", sub.create(new byte[] {-3, 4}).toType(DataType.UINT8, false));
            byName.put("bool", sub.create(new boolean[] {false, true, true}));
            byName.forEach((name, a) -> {
                NDArray copy = a.duplicate();
                copy.setName(name);
                list.add(copy);
            });
            Path djlFile = dir.resolve("djl.safetensors");
            try (OutputStream os = Files.newOutputStream(djlFile)) {
                list.encode(os, NDList.Encoding.SAFETENSORS);
            }
            try (SafetensorsReader r = SafetensorsReader.open(djlFile)) {
                assertEquals(byName.keySet(), new java.util.HashSet<>(r.names()));
                for (Map.Entry<String, NDArray> e : byName.entrySet()) {
                    NDArray back = r.read(e.getKey(), sub);
                    assertEquals(e.getValue().getDataType(), back.getDataType(), e.getKey());
                    assertEquals(e.getValue().getShape(), back.getShape(), e.getKey());
                    assertArrayEquals(bytes(e.getValue()), bytes(back), e.getKey());
                }
            }

            Path kilnFile = dir.resolve("kiln.safetensors");
            SafetensorsWriter.save(kilnFile, Map.of("format", "pt"), byName);
            NDList decoded = NDList.decode(sub, Files.readAllBytes(kilnFile));
            assertEquals(byName.size(), decoded.size());
            for (Map.Entry<String, NDArray> e : byName.entrySet()) {
                NDArray back = decoded.get(e.getKey());
                assertEquals(e.getValue().getDataType(), back.getDataType(), e.getKey());
                assertEquals(e.getValue().getShape(), back.getShape(), e.getKey());
                assertArrayEquals(bytes(e.getValue()), bytes(back), e.getKey());
            }
        }
    }

    static byte[] bytes(NDArray a) {
        ByteBuffer b = a.toByteBuffer();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }
}
