package dev.kiln.spi.augment;

import ai.djl.ndarray.NDArray;

/** A loss contribution computed from the model's logits on a mixed batch; added to the main loss. */
@FunctionalInterface
public interface LossTerm {
    /**
     * @param logits the model's outputs on the mixed inputs, (N, K)
     * @return a scalar loss, differentiable with respect to {@code logits}
     */
    NDArray compute(NDArray logits);
}
