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
 * @param ranks for a {@link MagnitudeTrim} method, the magnitude selections over the whole trim scope that the core
 *     found in a first pass (the tensors are then one row block of the scope); null when the method is to rank the
 *     tensors it was given itself (since 1.2)
 */
public record MergeInput(String tensorName, NDArray base, List<ModelTensor> models, RandomGenerator random,
        MagnitudeRanks ranks) {

    /** An input without precomputed ranks (SPI 1.1's constructor). */
    public MergeInput(String tensorName, NDArray base, List<ModelTensor> models, RandomGenerator random) {
        this(tensorName, base, models, random, null);
    }

    /** Whether a base tensor is present. */
    public boolean hasBase() {
        return base != null;
    }
}
