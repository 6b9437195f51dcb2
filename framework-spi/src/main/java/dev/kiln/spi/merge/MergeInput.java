package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;
import java.util.List;
import java.util.random.RandomGenerator;

/**
 * Everything a merge method sees for one tensor name.
 *
 * @param tensorName the tensor's name in the checkpoints (for messages and name-dependent rules)
 * @param base the base model's tensor, or null when the merge has no base
 * @param models the input models' tensors, all of the same shape as each other and as the base, float32
 * @param random a random source seeded from the merge's seed and the tensor name (for DARE's drop masks)
 */
public record MergeInput(String tensorName, NDArray base, List<ModelTensor> models, RandomGenerator random) {

    /** Whether a base tensor is present. */
    public boolean hasBase() {
        return base != null;
    }
}
