package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

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

    /**
     * {@link #largest} as float32 factors (1 selected, 0 not), ready to multiply a task vector with; implementations
     * may compute them without the boolean mask, which is cheaper on CPU.
     *
     * @since 1.2
     */
    default NDArray largestAsFloat(int model, long k, NDArray magnitude) {
        return largest(model, k, magnitude).toType(DataType.FLOAT32, false);
    }
}
