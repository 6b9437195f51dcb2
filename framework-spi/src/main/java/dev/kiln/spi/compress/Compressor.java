package dev.kiln.spi.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

/** Compresses weight tensors one at a time. */
public interface Compressor {

    /** Whether this compressor applies to a tensor (by default: float matrices and conv kernels, not biases). */
    default boolean appliesTo(String name, Shape shape) {
        return shape.dimension() >= 2;
    }

    /** Compresses one tensor; the input is not modified. */
    CompressedTensor compress(String name, NDArray weight);
}
