package dev.kiln.core.lm;

/**
 * A {@link Generation} with its wall times.
 *
 * @param generation the tokens, logits and layer decisions
 * @param prefillNanos the prefill pass (the prompt, and the first new token's logits)
 * @param decodeNanos all decode passes together (one per new token after the first)
 */
public record TimedGeneration(Generation generation, long prefillNanos, long decodeNanos) {
}
