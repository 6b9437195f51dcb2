package dev.kiln.core.lm;

import dev.kiln.spi.KilnException;

/**
 * Shape of a {@link DecoderLm}.
 *
 * @param layers transformer blocks
 * @param dim hidden size, divisible by {@code heads}
 * @param heads attention heads
 * @param ffnMultiplier FFN hidden size as a multiple of {@code dim}
 * @param maxLength longest sequence (learned position embeddings)
 * @param tiedHead whether the output head reuses the token embedding
 */
public record DecoderConfig(int layers, int dim, int heads, int ffnMultiplier, int maxLength, boolean tiedHead) {

    /** Checks every field; the message names the bad one. */
    public DecoderConfig {
        check("layers", layers);
        check("dim", dim);
        check("heads", heads);
        check("ffnMultiplier", ffnMultiplier);
        check("maxLength", maxLength);
        if (dim % heads != 0) {
            throw new KilnException("decoder config: dim " + dim + " is not divisible by heads " + heads);
        }
    }

    private static void check(String name, int value) {
        if (value < 1) {
            throw new KilnException("decoder config: " + name + " must be at least 1, got " + value);
        }
    }

    /** FFN hidden size. */
    public int ffnDim() {
        return dim * ffnMultiplier;
    }
}
