package dev.kiln.core.encoder;

import java.util.Arrays;

/**
 * A float32 initializer read from an ONNX file, row-major as stored.
 *
 * @param name the initializer name
 * @param dims the shape
 * @param data the values, {@code product(dims)} of them
 */
public record OnnxTensor(String name, long[] dims, float[] data) {

    /** Element count implied by the shape. */
    public long size() {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        return n;
    }

    @Override
    public String toString() {
        return name + Arrays.toString(dims);
    }
}
