package dev.kiln.spi.augment;

/**
 * Mixed-sample data augmentation: turns a batch into mixed inputs and soft targets.
 *
 * <p>Implementations work in NDArray operations on the batch's device (no per-element Java loops), leave the input
 * arrays unchanged, accept any batch size including 1 and odd sizes, and return targets whose rows sum to 1.
 */
@FunctionalInterface
public interface Augmentation {

    /** Mixes one batch. */
    MixedBatch mix(Batch batch, MixContext context);
}
