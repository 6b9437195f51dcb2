package dev.kiln.core.safetensors;

import java.util.Arrays;

/**
 * One validated header entry of a safetensors file.
 *
 * @param name the tensor's key
 * @param dtype its element type
 * @param shape its dimensions (empty for a scalar); copied, never shared
 * @param begin start of its bytes, relative to the data section (as in the header's {@code data_offsets})
 * @param end end (exclusive) of its bytes, relative to the data section
 */
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {

    /** Copies the shape. */
    public TensorInfo {
        shape = shape.clone();
    }

    /** A copy of the dimensions. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Number of elements (1 for a scalar). */
    public long elementCount() {
        return elementCount(shape);
    }

    /** Stored size in bytes. */
    public long byteLength() {
        return end - begin;
    }

    /** The name, dtype and shape, without the position. */
    public TensorSpec spec() {
        return new TensorSpec(name, dtype, shape);
    }

    static long elementCount(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorInfo t && name.equals(t.name) && dtype == t.dtype && Arrays.equals(shape, t.shape)
                && begin == t.begin && end == t.end;
    }

    @Override
    public int hashCode() {
        return ((name.hashCode() * 31 + dtype.hashCode()) * 31 + Arrays.hashCode(shape)) * 31 + Long.hashCode(begin);
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape) + " [" + begin + ", " + end + ")";
    }
}
