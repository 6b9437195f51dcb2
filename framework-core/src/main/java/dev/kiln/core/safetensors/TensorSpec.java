package dev.kiln.core.safetensors;

import java.util.Arrays;

/**
 * What a writer is told about a tensor before any data: its name, element type and shape.
 *
 * @param name the tensor's key in the header
 * @param dtype the stored element type
 * @param shape the dimensions (empty for a scalar); copied, never shared
 */
public record TensorSpec(String name, DType dtype, long[] shape) {

    /** Validates and copies the shape. */
    public TensorSpec {
        if (name == null) {
            throw new IllegalArgumentException("Tensor name is null");
        }
        if (dtype == null) {
            throw new IllegalArgumentException("Tensor '" + name + "' has no dtype");
        }
        shape = shape.clone();
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("Tensor '" + name + "' has a negative dimension " + d + " in shape "
                        + Arrays.toString(shape));
            }
        }
    }

    /** A copy of the dimensions. */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Stored size in bytes; {@link ArithmeticException} if it does not fit in a long. */
    public long byteLength() {
        return Math.multiplyExact(TensorInfo.elementCount(shape), (long) dtype.byteSize());
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorSpec t && name.equals(t.name) && dtype == t.dtype && Arrays.equals(shape, t.shape);
    }

    @Override
    public int hashCode() {
        return (name.hashCode() * 31 + dtype.hashCode()) * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }
}
