package dev.kiln.spi.augment;

import ai.djl.ndarray.NDArray;

/**
 * A batch after mixing: inputs of the same shape as before and soft targets (N, K) whose rows sum to 1.
 *
 * @param inputs mixed inputs, same shape and dtype as the batch's inputs
 * @param targets soft targets (N, K), float32, every row summing to 1
 * @param extraLoss an additional loss term added to the soft-target cross-entropy, or null (Decoupled Mixup)
 */
public record MixedBatch(NDArray inputs, NDArray targets, LossTerm extraLoss) {

    /** A mixed batch without an extra loss term. */
    public MixedBatch(NDArray inputs, NDArray targets) {
        this(inputs, targets, null);
    }
}
