package dev.kiln.spi.augment;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * A training batch before mixing.
 *
 * @param inputs samples, shape (N, C, H, W) for images (any leading batch dimension N for other data)
 * @param labels class indices, shape (N) of an integer type, or soft targets, shape (N, K) of a float type
 * @param numClasses K, the number of classes
 */
public record Batch(NDArray inputs, NDArray labels, int numClasses) {

    /** Batch size N. */
    public int size() {
        return (int) inputs.getShape().get(0);
    }

    /** The labels as soft targets (N, K) in float32: one-hot rows for integer labels, as given otherwise. */
    public NDArray softTargets() {
        if (labels.getShape().dimension() == 2) {
            return labels.toType(DataType.FLOAT32, false);
        }
        return labels.toType(DataType.INT64, false).oneHot(numClasses);
    }
}
