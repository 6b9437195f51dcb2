package dev.kiln.core.engine;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Scalar operands for arithmetic that autograd records.
 *
 * <p>DJL's PyTorch engine implements {@code x.mul(0.5f)}, {@code x.div(n)}, {@code x.pow(3)}, {@code x.maximum(0f)}
 * and the other {@code Number} overloads by creating a zero-dimensional tensor over a Java direct buffer and closing
 * it as soon as the op returns. Autograd keeps that tensor for the backward pass (the gradient of {@code x * c} is
 * {@code grad * c}), but once the NDArray is closed nothing keeps its direct buffer alive, so the garbage collector may
 * free the memory before {@code backward} reads it: gradients then come from freed memory. This showed as a NaN
 * gradient in about one language-model training step in 200, at a step that moved with the allocation pattern.
 * A scalar made here belongs to the caller's step manager, which stays open until after the backward pass.
 */
public final class GraphScalars {
    private GraphScalars() {
    }

    /** A float32 scalar owned by {@code scope}; use it instead of a {@code Number} operand inside a gradient pass. */
    public static NDArray of(NDManager scope, float value) {
        return scope.create(value);
    }
}
