package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;

/**
 * Exact magnitude selections over a whole trim scope, applied to the block being merged (see {@link MagnitudeTrim}).
 *
 * @since 1.2
 */
public interface MagnitudeRanks {

    /** Elements in the scope the ranks are over: the whole tensor, or all float tensors of the model. */
    long scopeElements();

    /**
     * A boolean mask shaped like {@code magnitude} (this block of model {@code model}'s {@code |theta - base|}, as
     * float32) of the elements that are among the {@code k} largest of the whole scope.
     *
     * @throws IllegalStateException when {@code k} is not one of the counts the method declared for that model
     */
    NDArray largest(int model, long k, NDArray magnitude);
}
