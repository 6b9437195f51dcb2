package dev.kiln.core.lm;

/**
 * The result of {@link DecoderLm#generate}.
 *
 * @param tokens the generated tokens, {@code [batch][newTokens]} (prompts excluded)
 * @param logits the next-token logits of every step, {@code [step][batch][256]}
 * @param layerRan per processed position and layer, whether the block ran ({@code [position][layer]}); prompt
 *     positions share the prefill decisions
 * @param attentionRan per position and layer, whether attention ran
 * @param ffnRan per position and layer, whether the FFN ran
 */
public record Generation(int[][] tokens, float[][][] logits, boolean[][] layerRan, boolean[][] attentionRan,
        boolean[][] ffnRan) {
}
