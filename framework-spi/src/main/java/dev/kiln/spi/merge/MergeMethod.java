package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;

/**
 * Merges the tensors of one name from several models into one tensor.
 *
 * <p>The core streams checkpoints one tensor name at a time, so memory stays bounded by a few tensors whatever the
 * model size. Methods compute in float32 NDArray operations on the inputs' device and return a tensor of the same
 * shape; they must not close or modify the inputs.
 */
public interface MergeMethod {

    /** Merges one tensor name. */
    NDArray merge(MergeInput input);

    /** Whether the method needs a base model (task vectors are differences to it). */
    default boolean requiresBase() {
        return false;
    }

    /**
     * Whether the merged value of an element depends only on that element of the inputs (and on per-model scalars),
     * so the core may merge a tensor in row blocks and keep memory bounded by the block size. Then {@link
     * MergeInput#random()} is a source per block (derived from the seed, the tensor name and the block index), and
     * {@link MergeInput#tensorName()} is still the whole tensor's name. Methods that use whole-tensor statistics
     * (norms, top-k, angles) must leave this false; a method whose only whole-tensor statistic is a magnitude top-k
     * implements {@link MagnitudeTrim} instead, and is merged in row blocks with the ranks found in a first pass.
     *
     * @since 1.1
     */
    default boolean elementwise() {
        return false;
    }
}
