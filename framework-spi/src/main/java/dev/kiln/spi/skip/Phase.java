package dev.kiln.spi.skip;

/** What the model is doing when a skip session starts. */
public enum Phase {
    /** Training step (layer dropout applies here). */
    TRAIN,
    /** Processing the prompt. */
    PREFILL,
    /** Generating one token. */
    DECODE,
    /** A classifier or encoder forward pass. */
    FORWARD
}
