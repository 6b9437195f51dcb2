package dev.kiln.core.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a safetensors file one tensor at a time, so memory holds at most the tensor asked for.
 *
 * <p>{@link #open(Path)} reads and validates the whole header before it returns: every entry well formed, sizes
 * matching dtype times shape (overflow checked), offsets inside the file, the data section tiled exactly once. Any
 * problem is a {@link CheckpointFormatException} naming the file and tensor. Offsets are 64-bit throughout, so files
 * larger than 2 GB work; a single tensor larger than 2 GB is read in chunks ({@link #mapChunks(String)}, and
 * {@link #read(String, NDManager)} fills one array piece by piece), while {@link #map(String)}, {@link #readBytes(String)} and
 * {@link #readFloats(String)}, which return one Java buffer or array, refuse it with a clear error.
 *
 * <p>Positional reads make one reader safe to share between threads. Close it to release the file.
 */
public final class SafetensorsReader implements AutoCloseable {

    /** Default largest piece read or mapped at once; keeps every Java buffer well under the 2 GB limit. */
    static final int DEFAULT_CHUNK_BYTES = 1 << 30;

    private static final int MAX_ARRAY = Integer.MAX_VALUE - 8;

    /** Largest piece {@link #read(String, NDManager)} maps at once: bounds the transient mapping beside the copy. */
    private static final int READ_PIECE_BYTES = 64 << 20;

    private final Path file;
    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, String> metadata;
    private final Map<String, TensorInfo> tensors;
    private int chunkBytes = DEFAULT_CHUNK_BYTES;

    private SafetensorsReader(Path file, FileChannel channel, long dataStart, Header header) {
        this.file = file;
        this.channel = channel;
        this.dataStart = dataStart;
        this.metadata = header.metadata;
        Map<String, TensorInfo> byName = new LinkedHashMap<>();
        for (TensorInfo t : header.tensors) {
            byName.put(t.name(), t);
        }
        this.tensors = Collections.unmodifiableMap(byName);
    }

    /**
     * Opens {@code file} and validates its header.
     *
     * @throws CheckpointFormatException when the file is not a valid safetensors file
     * @throws KilnException naming the file when it cannot be opened or read
     */
    public static SafetensorsReader open(Path file) {
        FileChannel channel;
        try {
            channel = FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new KilnException("Checkpoint " + file + " does not exist", e);
        } catch (IOException e) {
            throw new KilnException("Cannot open checkpoint " + file + ": " + e, e);
        }
        try {
            long size = channel.size();
            if (size < 8) {
                throw new CheckpointFormatException(file, "the file has " + size
                        + " bytes, fewer than the 8-byte header length that starts every safetensors file");
            }
            ByteBuffer prefix = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(file, channel, prefix, 0);
            long headerLength = prefix.getLong(0);
            if (headerLength < 0 || headerLength > Header.MAX_HEADER_BYTES) {
                throw new CheckpointFormatException(file, "header length " + Long.toUnsignedString(headerLength)
                        + " bytes exceeds the cap of " + Header.MAX_HEADER_BYTES + " bytes");
            }
            if (headerLength > size - 8) {
                throw new CheckpointFormatException(file, "header length " + headerLength
                        + " bytes runs past the end of the file, which has only " + (size - 8)
                        + " bytes after the length (truncated file?)");
            }
            ByteBuffer json = ByteBuffer.allocate((int) headerLength);
            readFully(file, channel, json, 8);
            Header header = Header.parse(file, json.array(), size - 8 - headerLength);
            return new SafetensorsReader(file, channel, 8 + headerLength, header);
        } catch (IOException e) {
            closeQuietly(channel);
            throw new KilnException("Cannot read checkpoint " + file + ": " + e, e);
        } catch (RuntimeException e) {
            closeQuietly(channel);
            throw e;
        }
    }

    /** The file being read. */
    public Path file() {
        return file;
    }

    /** The {@code __metadata__} entries (empty when the file has none). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tensor names in header order. */
    public List<String> names() {
        return List.copyOf(tensors.keySet());
    }

    /** All tensors in header order. */
    public List<TensorInfo> tensors() {
        return List.copyOf(tensors.values());
    }

    /** Whether the file holds a tensor called {@code name}. */
    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /** Absolute file position of the data section (8 plus the header length). */
    public long dataStart() {
        return dataStart;
    }

    /**
     * The header entry of {@code name}.
     *
     * @throws KilnException naming the file when there is no such tensor
     */
    public TensorInfo info(String name) {
        TensorInfo t = tensors.get(name);
        if (t == null) {
            throw new KilnException("Checkpoint " + file + " has no tensor '" + name + "'");
        }
        return t;
    }

    /**
     * A read-only, little-endian memory mapping of the tensor's bytes. The mapping stays valid after {@link #close()}
     * until it is garbage collected.
     *
     * @throws CheckpointFormatException when the tensor exceeds 2^31-1 bytes (use {@link #mapChunks(String)})
     */
    public ByteBuffer map(String name) {
        TensorInfo t = info(name);
        if (t.byteLength() > Integer.MAX_VALUE) {
            throw new CheckpointFormatException(file, name, "the tensor has " + t.byteLength()
                    + " bytes, more than one Java buffer holds (2^31-1); use mapChunks()");
        }
        return mapRange(t, t.begin(), (int) t.byteLength());
    }

    /**
     * Read-only, little-endian mappings covering the tensor's bytes in order, each at most the chunk size (1 GiB) and
     * holding whole elements. Works for tensors of any size; an empty tensor gives an empty list.
     */
    public List<ByteBuffer> mapChunks(String name) {
        TensorInfo t = info(name);
        long step = chunkElements(t.dtype().byteSize()) * t.dtype().byteSize();
        List<ByteBuffer> out = new ArrayList<>();
        for (long pos = t.begin(); pos < t.end(); pos += step) {
            out.add(mapRange(t, pos, (int) Math.min(step, t.end() - pos)));
        }
        return out;
    }

    /** A copy of the tensor's raw little-endian bytes. */
    public byte[] readBytes(String name) {
        TensorInfo t = info(name);
        if (t.byteLength() > MAX_ARRAY) {
            throw new CheckpointFormatException(file, name, "the tensor has " + t.byteLength()
                    + " bytes, more than a Java array holds; use mapChunks()");
        }
        ByteBuffer buffer = ByteBuffer.allocate((int) t.byteLength());
        readFully(file, channel, buffer, dataStart + t.begin());
        return buffer.array();
    }

    /**
     * The tensor's values as float32: exact for F32, F16 and BF16, rounded to nearest for F64.
     *
     * @throws CheckpointFormatException when the dtype is not a float type or the tensor has more elements than a
     *     Java array holds
     */
    public float[] readFloats(String name) {
        TensorInfo t = info(name);
        if (!t.dtype().isFloating()) {
            throw new CheckpointFormatException(file, name, "readFloats needs a float dtype but the tensor is "
                    + t.dtype());
        }
        long count = t.elementCount();
        if (count > MAX_ARRAY) {
            throw new CheckpointFormatException(file, name, "the tensor has " + count
                    + " elements, more than a Java array holds");
        }
        float[] out = new float[(int) count];
        int size = t.dtype().byteSize();
        long perChunk = chunkElements(size);
        ByteBuffer buffer = ByteBuffer.allocate((int) (Math.min(perChunk, count) * size)).order(ByteOrder.LITTLE_ENDIAN);
        for (long first = 0; first < count; first += perChunk) {
            int n = (int) Math.min(perChunk, count - first);
            buffer.clear().limit(n * size);
            readFully(file, channel, buffer, dataStart + t.begin() + first * size);
            buffer.flip();
            int base = (int) first;
            switch (t.dtype()) {
                case F32:
                    buffer.asFloatBuffer().get(out, base, n);
                    break;
                case F64:
                    for (int i = 0; i < n; i++) {
                        out[base + i] = (float) buffer.getDouble(i * 8);
                    }
                    break;
                case F16:
                    for (int i = 0; i < n; i++) {
                        out[base + i] = FloatBits.f16ToFloat(buffer.getShort(i * 2));
                    }
                    break;
                case BF16:
                    for (int i = 0; i < n; i++) {
                        out[base + i] = FloatBits.bf16ToFloat(buffer.getShort(i * 2));
                    }
                    break;
                default:
                    throw new AssertionError(t.dtype());
            }
        }
        return out;
    }

    /**
     * The tensor as an NDArray on {@code manager}, in its own dtype except BF16, which arrives as FLOAT32, and I16,
     * which arrives as INT32 (both converted exactly in Java because either type aborts the PyTorch engine). The array
     * owns its memory (torch's allocator): the file is not mapped into it and no Java buffer stays behind, so reading
     * many tensors does not use up the JVM's direct-memory limit.
     */
    public NDArray read(String name, NDManager manager) {
        TensorInfo t = info(name);
        return readElements(t, 0, t.elementCount(), new Shape(t.shape()), manager);
    }

    /**
     * Rows {@code [firstRow, endRow)} of the tensor (slices along its first dimension) as an NDArray of shape {@code
     * [endRow - firstRow, shape[1], ...]}, loaded like {@link #read(String, NDManager)}. Only those rows' bytes are
     * read, which lets a caller process a tensor larger than memory in row blocks.
     *
     * @throws KilnException naming the tensor when it is a scalar or the row range is outside {@code [0, shape[0]]}
     */
    public NDArray readRows(String name, long firstRow, long endRow, NDManager manager) {
        TensorInfo t = info(name);
        long[] shape = t.shape();
        if (shape.length == 0) {
            throw new KilnException("Tensor '" + name + "' of checkpoint " + file + " is a scalar; it has no rows");
        }
        if (firstRow < 0 || endRow < firstRow || endRow > shape[0]) {
            throw new KilnException("Tensor '" + name + "' of checkpoint " + file + " has " + shape[0]
                    + " rows; rows [" + firstRow + ", " + endRow + ") are out of range");
        }
        long rowElements = 1;
        for (int i = 1; i < shape.length; i++) {
            rowElements *= shape[i];
        }
        long[] blockShape = shape.clone();
        blockShape[0] = endRow - firstRow;
        return readElements(t, firstRow * rowElements, (endRow - firstRow) * rowElements, new Shape(blockShape),
                manager);
    }

    /**
     * Elements {@code [first, first + count)} of the tensor in flat (row-major) order as a 1-D NDArray, loaded like
     * {@link #read(String, NDManager)}; only those elements' bytes are read.
     *
     * @throws KilnException naming the tensor when the range is outside the tensor
     */
    public NDArray readFlat(String name, long first, long count, NDManager manager) {
        TensorInfo t = info(name);
        if (first < 0 || count < 0 || first + count > t.elementCount()) {
            throw new KilnException("Tensor '" + name + "' of checkpoint " + file + " has " + t.elementCount()
                    + " elements; elements [" + first + ", " + (first + count) + ") are out of range");
        }
        return readElements(t, first, count, new Shape(count), manager);
    }

    /**
     * The runs {@code [firsts[i], firsts[i] + counts[i])} of the tensor's flat elements, one after another in a 1-D
     * NDArray: one array and one positional read per run, where a {@link #readFlat} per run costs an array (and native
     * calls on it) per run. For a sample of many short runs.
     *
     * @throws KilnException naming the tensor when a run is outside the tensor
     */
    public NDArray readFlat(String name, long[] firsts, int[] counts, NDManager manager) {
        TensorInfo t = info(name);
        long total = 0;
        for (int i = 0; i < firsts.length; i++) {
            if (firsts[i] < 0 || counts[i] < 0 || firsts[i] + counts[i] > t.elementCount()) {
                throw new KilnException("Tensor '" + name + "' of checkpoint " + file + " has " + t.elementCount()
                        + " elements; elements [" + firsts[i] + ", " + (firsts[i] + counts[i]) + ") are out of range");
            }
            total += counts[i];
        }
        int size = t.dtype().byteSize();
        if (t.dtype().loadsAsIs() && total > 0 && total * size <= MAX_ARRAY) {
            NDArray out = manager.create(new Shape(total), t.dtype().loadedType());
            try {
                ByteBuffer view = out.toByteBuffer(true);
                if (view.isDirect() && !view.isReadOnly() && view.capacity() == total * size) {
                    int at = 0;
                    for (int i = 0; i < firsts.length; i++) {
                        ByteBuffer piece = view.duplicate();
                        piece.position(at).limit(at + counts[i] * size);
                        readFully(file, channel, piece, dataStart + t.begin() + firsts[i] * size);
                        at += counts[i] * size;
                    }
                    return out;
                }
            } catch (RuntimeException e) {
                out.close();
                throw e;
            }
            out.close();
        }
        List<NDArray> pieces = new ArrayList<>();
        try {
            for (int i = 0; i < firsts.length; i++) {
                pieces.add(readFlat(name, firsts[i], counts[i], manager));
            }
            return pieces.size() == 1 ? pieces.get(0)
                    : ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(pieces));
        } finally {
            if (pieces.size() > 1) {
                pieces.forEach(NDArray::close);
            }
        }
    }

    private NDArray readElements(TensorInfo t, long first, long count, Shape shape, NDManager manager) {
        DataType type = t.dtype().loadedType();
        if (count == 0) {
            return manager.create(shape, type);
        }
        if (t.dtype().loadsAsIs() && count * t.dtype().byteSize() <= MAX_ARRAY) {
            NDArray direct = readInto(t, first, count, manager);
            if (direct != null) {
                return reshapeOwned(direct, shape);
            }
        }
        int widest = Math.max(type.getNumOfBytes(), t.dtype().byteSize());
        long perPiece = Math.max(1, Math.min(chunkBytes, READ_PIECE_BYTES) / widest);
        if (count <= perPiece) {
            NDArray flat = loadPiece(t, first, (int) count, manager);
            return reshapeOwned(flat, shape);
        }
        // Filling one preallocated array piece by piece keeps the peak at the tensor plus one piece, where
        // concatenating pieces would briefly hold the tensor twice.
        NDArray out = manager.create(new Shape(count), type);
        try {
            for (long done = 0; done < count; done += perPiece) {
                int n = (int) Math.min(perPiece, count - done);
                try (NDArray piece = loadPiece(t, first + done, n, manager)) {
                    out.set(new NDIndex("{}:{}", done, done + n), piece);
                }
            }
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
        return reshapeOwned(out, shape);
    }

    /**
     * Elements {@code [first, first + count)} read with positional file reads straight into a new torch-owned array,
     * through the engine's direct view of its memory: one copy (the kernel's, from the page cache) and no mapping,
     * where the mapped path costs page faults on the mapping, a copy, and an unmap (a TLB shootdown on every core
     * the process runs on). Returns null when the engine offers no direct view of the array, so the caller falls back
     * to the mapped path.
     */
    private NDArray readInto(TensorInfo t, long first, long count, NDManager manager) {
        int size = t.dtype().byteSize();
        int bytes = (int) (count * size);
        NDArray out = manager.create(new Shape(count), t.dtype().loadedType());
        try {
            ByteBuffer view = out.toByteBuffer(true);
            if (!view.isDirect() || view.isReadOnly() || view.capacity() != bytes) {
                out.close();
                return null;
            }
            int perPiece = (int) Math.max(size, Math.min(chunkBytes, READ_PIECE_BYTES) / size * size);
            long position = dataStart + t.begin() + first * size;
            for (int done = 0; done < bytes; done += perPiece) {
                int n = Math.min(perPiece, bytes - done);
                ByteBuffer piece = view.duplicate();
                piece.position(done).limit(done + n);
                readFully(file, channel, piece, position + done);
            }
            return out;
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
    }

    /** A reshaped view keeps its source's storage alive (torch reference counting), so the source can be closed. */
    private static NDArray reshapeOwned(NDArray flat, Shape shape) {
        if (flat.getShape().equals(shape)) {
            return flat;
        }
        NDArray out = flat.reshape(shape);
        flat.close();
        return out;
    }

    /**
     * Elements {@code [first, first + n)} as a flat array in torch-owned memory. The bytes reach torch through a
     * mapping of the file (or, for converted dtypes, a direct buffer) that the array aliases only until it is cloned;
     * the mapping or buffer is then released at once rather than left for the garbage collector.
     */
    private NDArray loadPiece(TensorInfo t, long first, int n, NDManager manager) {
        ByteBuffer bytes = loadChunk(t, first, n);
        try {
            try (NDArray alias = manager.create(bytes, new Shape(n), t.dtype().loadedType())) {
                return alias.duplicate();
            }
        } finally {
            DirectBuffers.free(bytes);
        }
    }

    /** Elements {@code [first, first + n)} of the tensor as a direct native-order buffer in the loaded type. */
    private ByteBuffer loadChunk(TensorInfo t, long first, int n) {
        DType dtype = t.dtype();
        int size = dtype.byteSize();
        long relative = t.begin() + first * size;
        if (dtype.loadsAsIs()) {
            // Safetensors is little-endian; DJL takes the buffer's bytes as native order, which is little-endian on
            // every platform libtorch ships for (x86-64, aarch64). Mapping skips one copy and uses no direct memory.
            return mapRange(t, relative, n * size).order(ByteOrder.nativeOrder());
        }
        ByteBuffer raw = mapRange(t, relative, n * size);
        try {
            ByteBuffer out = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder());
            if (dtype == DType.BF16) {
                for (int i = 0; i < n; i++) {
                    out.putInt(i * 4, (raw.getShort(i * 2) & 0xffff) << 16);
                }
            } else {
                for (int i = 0; i < n; i++) {
                    out.putInt(i * 4, raw.getShort(i * 2));
                }
            }
            return out;
        } finally {
            DirectBuffers.free(raw);
        }
    }

    private ByteBuffer mapRange(TensorInfo t, long relative, int length) {
        if (length == 0) {
            return ByteBuffer.allocate(0).order(ByteOrder.LITTLE_ENDIAN);
        }
        try {
            return channel.map(FileChannel.MapMode.READ_ONLY, dataStart + relative, length)
                    .order(ByteOrder.LITTLE_ENDIAN);
        } catch (IOException e) {
            throw new KilnException("Cannot map tensor '" + t.name() + "' of checkpoint " + file + ": " + e, e);
        }
    }

    /** Whole elements of {@code elementBytes} per chunk, at least one. */
    private long chunkElements(int elementBytes) {
        return Math.max(1, chunkBytes / elementBytes);
    }

    /** For tests: a small chunk size exercises the multi-chunk paths without gigabyte tensors. */
    void chunkBytes(int bytes) {
        if (bytes < 8) {
            throw new IllegalArgumentException("chunk size " + bytes + " < 8");
        }
        this.chunkBytes = bytes;
    }

    private static void readFully(Path file, FileChannel channel, ByteBuffer dst, long position) {
        long pos = position;
        try {
            while (dst.hasRemaining()) {
                int n = channel.read(dst, pos);
                if (n < 0) {
                    throw new CheckpointFormatException(file, "the file ended at byte " + pos
                            + " while reading; was it truncated after opening?");
                }
                pos += n;
            }
        } catch (IOException e) {
            throw new KilnException("Cannot read checkpoint " + file + " at byte " + pos + ": " + e, e);
        }
    }

    private static void closeQuietly(FileChannel channel) {
        try {
            channel.close();
        } catch (IOException ignored) {
            // Already failing with the error that matters.
        }
    }

    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException e) {
            throw new KilnException("Cannot close checkpoint " + file + ": " + e, e);
        }
    }
}
