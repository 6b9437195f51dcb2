package dev.kiln.spi.skip;

import java.util.random.RandomGenerator;

/**
 * Decides which blocks run. A policy is created once per run; {@link #begin} starts the decisions for one pass.
 */
public interface SkipPolicy {

    /** The rule by which this policy keeps a KV cache valid. */
    KvCacheRule kvCacheRule();

    /**
     * Starts one forward pass.
     *
     * @param layout the model's blocks
     * @param phase training, prefill, decode or plain forward
     * @param position the position of the first token of this pass (0 for prefill); in {@link Phase#TRAIN} the
     *     0-based index of the training step (since SPI 1.2), which step-dependent curricula read
     * @param random seeded source for stochastic policies (layer dropout)
     */
    SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random);
}
