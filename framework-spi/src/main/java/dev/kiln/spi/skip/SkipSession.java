package dev.kiln.spi.skip;

import ai.djl.ndarray.NDArray;

/**
 * The decisions for one forward pass (one training step, one prefill, one decoded token), asked layer by layer in
 * order. A session may observe FFN inputs and outputs to decide about later layers (FFN-SkipLLM).
 */
public interface SkipSession {

    /** Whether block {@code layer} runs at all. */
    boolean runLayer(int layer);

    /** Whether the attention sub-block of {@code layer} runs, asked only when the layer runs. */
    default boolean runAttention(int layer) {
        return true;
    }

    /** Whether the FFN sub-block of {@code layer} runs, asked only when the layer runs. */
    default boolean runFfn(int layer) {
        return true;
    }

    /**
     * The weight of an early-exit loss on the hidden state after {@code layer} in a training pass (LayerSkip): the
     * trainer applies the model's final norm and head there and adds {@code weight * cross-entropy} to the loss; the
     * weight of the last layer stands for the model's own output. All zero (the default) means the usual loss on the
     * final output only. A policy that returns weights returns them normalised to sum to 1.
     *
     * @since SPI 1.2
     */
    default double exitLossWeight(int layer) {
        return 0;
    }

    /** Called after an FFN ran, with its input and output hidden states (B, T, D). */
    default void observeFfn(int layer, NDArray input, NDArray output) {
    }
}
