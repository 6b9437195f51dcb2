package dev.kiln.core.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a safetensors file atomically, one tensor at a time.
 *
 * <p>The caller declares every tensor's name, dtype and shape up front; that fixes the header and each tensor's
 * offset, so the header is written first and each tensor goes straight to its place (in any order) in a temporary
 * file next to the target. Memory never holds more than the tensor being written (or one 1 GiB chunk of it), and
 * the output is written in a single pass. {@link #commit()} checks that every declared tensor was written, forces the
 * file to disk and renames it onto the target; {@link #close()} without a commit deletes the temporary file and leaves
 * any existing target untouched, as does a crash or SIGKILL at any point.
 *
 * <p>The header lists tensors in declaration order, carries the {@code __metadata__} strings when there are any, and
 * is padded with spaces so that the data section starts at a multiple of 8 bytes (aligned, zero-copy friendly).
 *
 * <pre>{@code
 * try (SafetensorsWriter w = SafetensorsWriter.create(path, Map.of("format", "pt"), specs)) {
 *     w.write("w", weights);
 *     w.commit();
 * }
 * }</pre>
 */
public final class SafetensorsWriter implements AutoCloseable {

    private final Path target;
    private final AtomicFiles.Pending out;
    private final Map<String, Slot> slots;
    private final long dataStart;
    private int chunkBytes = SafetensorsReader.DEFAULT_CHUNK_BYTES;
    private boolean finished;

    private static final class Slot {
        final TensorSpec spec;
        final long begin;
        final long length;
        boolean written;
        /** Bytes written so far by {@link #writeSlice}; the slot counts as written when they reach its length. */
        long filled;

        Slot(TensorSpec spec, long begin, long length) {
            this.spec = spec;
            this.begin = begin;
            this.length = length;
        }
    }

    private SafetensorsWriter(Path target, AtomicFiles.Pending out, Map<String, Slot> slots, long dataStart) {
        this.target = target;
        this.out = out;
        this.slots = slots;
        this.dataStart = dataStart;
    }

    /**
     * Starts a file at {@code target} holding exactly {@code specs}, in that order, and writes its header to a
     * temporary sibling.
     *
     * @param metadata {@code __metadata__} strings (may be empty)
     * @throws CheckpointFormatException for a duplicated or reserved tensor name or a size that overflows
     */
    public static SafetensorsWriter create(Path target, Map<String, String> metadata, List<TensorSpec> specs) {
        byte[] header = Header.encode(target, metadata, specs);
        long dataStart = 8L + header.length;
        Map<String, Slot> slots = new LinkedHashMap<>();
        long offset = dataStart;
        for (TensorSpec spec : specs) {
            long length = spec.byteLength();
            slots.put(spec.name(), new Slot(spec, offset, length));
            offset += length;
        }
        AtomicFiles.Pending out = AtomicFiles.begin(target);
        try {
            ByteBuffer head = ByteBuffer.allocate(header.length + 8).order(ByteOrder.LITTLE_ENDIAN);
            head.putLong(header.length).put(header).flip();
            SafetensorsWriter writer = new SafetensorsWriter(target, out, slots, dataStart);
            writer.writeAt(head, 0);
            return writer;
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
    }

    /**
     * Writes {@code arrays} (in map order, dtype and shape taken from each array) to {@code target} atomically.
     * For small outputs; large models should declare specs and write tensor by tensor.
     */
    public static void save(Path target, Map<String, String> metadata, Map<String, NDArray> arrays) {
        List<TensorSpec> specs = new ArrayList<>();
        arrays.forEach((name, array) -> specs.add(specOf(target, name, array)));
        try (SafetensorsWriter w = create(target, metadata, specs)) {
            arrays.forEach(w::write);
            w.commit();
        }
    }

    /** The spec that stores {@code array} as it is. */
    public static TensorSpec specOf(Path target, String name, NDArray array) {
        DType dtype = DType.fromDjl(array.getDataType());
        if (dtype == null) {
            throw new CheckpointFormatException(target, name, "arrays of type " + array.getDataType()
                    + " cannot be stored in safetensors by Kiln");
        }
        return new TensorSpec(name, dtype, array.getShape().getShape());
    }

    /** The file this writer will produce. */
    public Path target() {
        return target;
    }

    /** The temporary file being written (for diagnostics and tests). */
    public Path tempFile() {
        return out.tempFile();
    }

    /** Offset of the data section in the file: a multiple of 8. */
    public long dataStart() {
        return dataStart;
    }

    /**
     * Writes a declared tensor from an NDArray of the same shape. The array's dtype should be the declared one; a
     * float array may also be stored as another float dtype (F64, F32, F16 converted by the engine, BF16 rounded to
     * nearest-even in Java from float32). The array is not modified or closed.
     */
    public void write(String name, NDArray array) {
        Slot slot = claim(name);
        long[] shape = array.getShape().getShape();
        if (!Arrays.equals(shape, slot.spec.shape())) {
            throw fail(name, "the array has shape " + Arrays.toString(shape) + " but the tensor was declared as "
                    + Arrays.toString(slot.spec.shape()));
        }
        DType target = slot.spec.dtype();
        DType source = DType.fromDjl(array.getDataType());
        boolean convert = source != target;
        if (convert && !(source != null && source.isFloating() && target.isFloating())) {
            throw fail(name, "an array of type " + array.getDataType() + " cannot be stored as " + target
                    + "; convert it first");
        }
        long count = slot.length / target.byteSize();
        // One element of a float32 array may become 4 bytes of BF16 work buffer, so size chunks by the widest form.
        long perChunk = Math.max(1, chunkBytes / Math.max(8, target.byteSize()));
        NDArray flat = array.reshape(-1);
        try {
            long position = slot.begin;
            for (long first = 0; first < count; first += perChunk) {
                long last = Math.min(count, first + perChunk);
                boolean whole = first == 0 && last == count;
                NDArray piece = whole ? flat : flat.get(new NDIndex("{}:{}", first, last));
                try {
                    ByteBuffer bytes = encodePiece(piece, target, convert);
                    position += writeAt(bytes, position);
                } finally {
                    if (!whole) {
                        piece.close();
                    }
                }
            }
        } finally {
            flat.close();
        }
        slot.written = true;
    }

    private static ByteBuffer encodePiece(NDArray piece, DType target, boolean convert) {
        if (!convert) {
            return piece.toByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        }
        if (target != DType.BF16) {
            try (NDArray converted = piece.toType(target.loadedType(), false)) {
                return converted.toByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            }
        }
        NDArray asFloat = piece.getDataType() == DataType.FLOAT32 ? piece : piece.toType(DataType.FLOAT32, false);
        try {
            ByteBuffer floats = asFloat.toByteBuffer().order(ByteOrder.nativeOrder());
            int n = floats.remaining() / 4;
            ByteBuffer bf16 = ByteBuffer.allocate(n * 2).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < n; i++) {
                bf16.putShort(i * 2, FloatBits.floatToBf16(floats.getFloat(floats.position() + i * 4)));
            }
            return bf16;
        } finally {
            if (asFloat != piece) {
                asFloat.close();
            }
        }
    }

    /**
     * Writes a declared tensor from raw little-endian bytes in its declared dtype (how BF16 and F16 data made in Java
     * are written), given as one or more consecutive buffers so that tensors over 2 GB can be passed in pieces. The
     * buffers' positions are not changed.
     */
    public void write(String name, ByteBuffer... chunks) {
        Slot slot = claim(name);
        long total = 0;
        for (ByteBuffer c : chunks) {
            total += c.remaining();
        }
        if (total != slot.length) {
            throw fail(name, "got " + total + " bytes but " + slot.spec.dtype() + " with shape "
                    + Arrays.toString(slot.spec.shape()) + " needs " + slot.length);
        }
        long position = slot.begin;
        for (ByteBuffer c : chunks) {
            position += writeAt(c.duplicate(), position);
        }
        slot.written = true;
    }

    /**
     * Writes part of a declared tensor: {@code bytes} (raw little-endian, in the declared dtype) at byte
     * {@code offset} of the tensor's data. Lets a tensor produced in row blocks go straight to its place in the file,
     * from several threads at once. The tensor counts as written once slices totalling its length have arrived; the
     * caller must not write overlapping slices (they would be counted twice). The buffer's position is not changed.
     */
    public void writeSlice(String name, long offset, ByteBuffer bytes) {
        Slot slot;
        synchronized (this) {
            if (finished) {
                throw new IllegalStateException("The write of " + target + " is already finished");
            }
            slot = slots.get(name);
            if (slot == null) {
                throw fail(name, "the tensor was not declared when the writer was created");
            }
            if (slot.written) {
                throw fail(name, "the tensor was already written");
            }
            if (offset < 0 || offset + bytes.remaining() > slot.length) {
                throw fail(name, "a slice of " + bytes.remaining() + " bytes at offset " + offset
                        + " does not fit the tensor's " + slot.length + " bytes");
            }
        }
        // Positional writes to one channel may run concurrently; only the bookkeeping is serialised.
        writeAt(bytes.duplicate(), slot.begin + offset);
        synchronized (this) {
            slot.filled += bytes.remaining();
            if (slot.filled == slot.length) {
                slot.written = true;
            }
        }
    }

    /**
     * Writes a declared float tensor from float32 values in row-major order, converting to the declared dtype in Java
     * (F64 exactly, F16 and BF16 rounded to nearest-even).
     */
    public void writeFloats(String name, float[] values) {
        Slot slot = claim(name);
        DType dtype = slot.spec.dtype();
        if (!dtype.isFloating()) {
            throw fail(name, "writeFloats needs a float dtype but the tensor was declared as " + dtype);
        }
        long count = slot.length / dtype.byteSize();
        if (values.length != count) {
            throw fail(name, "got " + values.length + " values but shape " + Arrays.toString(slot.spec.shape())
                    + " has " + count + " elements");
        }
        int size = dtype.byteSize();
        int perChunk = Math.max(1, chunkBytes / size);
        ByteBuffer buffer = ByteBuffer.allocate(Math.min(perChunk, values.length) * size)
                .order(ByteOrder.LITTLE_ENDIAN);
        long position = slot.begin;
        for (int first = 0; first < values.length; first += perChunk) {
            int n = Math.min(perChunk, values.length - first);
            buffer.clear();
            for (int i = first; i < first + n; i++) {
                switch (dtype) {
                    case F64 -> buffer.putDouble(values[i]);
                    case F32 -> buffer.putFloat(values[i]);
                    case F16 -> buffer.putShort(FloatBits.floatToF16(values[i]));
                    case BF16 -> buffer.putShort(FloatBits.floatToBf16(values[i]));
                    default -> throw new AssertionError(dtype);
                }
            }
            buffer.flip();
            position += writeAt(buffer, position);
        }
        slot.written = true;
    }

    /** Declared tensors not written yet, in declaration order. */
    synchronized List<String> unwritten() {
        List<String> missing = new ArrayList<>();
        for (Slot s : slots.values()) {
            if (!s.written) {
                missing.add(s.spec.name());
            }
        }
        return missing;
    }

    /** Sends the bytes written so far to the disk ahead of {@link #commit()}; see {@link AtomicFiles.Pending}. */
    public void flushEarly() {
        out.flushEarly();
    }

    /**
     * Finishes the file: every declared tensor must have been written. Forces it to disk and atomically replaces the
     * target.
     */
    public void commit() {
        if (finished) {
            throw new IllegalStateException("The write of " + target + " is already finished");
        }
        List<String> missing = unwritten();
        if (!missing.isEmpty()) {
            throw new CheckpointFormatException(target, missing.get(0), missing.size()
                    + " declared tensor(s) were never written: "
                    + (missing.size() > 10 ? missing.subList(0, 10) + " ..." : missing));
        }
        finished = true;
        out.commit();
    }

    /** Abandons the file unless it was committed: the temporary file is deleted, the target left as it was. */
    @Override
    public void close() {
        finished = true;
        out.close();
    }

    /** For tests: a small chunk size exercises the multi-chunk paths. */
    void chunkBytes(int bytes) {
        if (bytes < 8) {
            throw new IllegalArgumentException("chunk size " + bytes + " < 8");
        }
        this.chunkBytes = bytes;
    }

    private synchronized Slot claim(String name) {
        if (finished) {
            throw new IllegalStateException("The write of " + target + " is already finished");
        }
        Slot slot = slots.get(name);
        if (slot == null) {
            throw fail(name, "the tensor was not declared when the writer was created");
        }
        if (slot.written) {
            throw fail(name, "the tensor was already written");
        }
        return slot;
    }

    private CheckpointFormatException fail(String name, String problem) {
        return new CheckpointFormatException(target, name, problem);
    }

    private int writeAt(ByteBuffer buffer, long position) {
        int total = buffer.remaining();
        long pos = position;
        try {
            while (buffer.hasRemaining()) {
                pos += out.channel().write(buffer, pos);
            }
        } catch (IOException e) {
            throw new KilnException("Cannot write " + target + " (temporary file " + out.tempFile() + "): " + e, e);
        }
        return total;
    }
}
