package dev.kiln.spi.skip;

/** How a skip policy keeps a decoder's key/value cache valid when layers are skipped. */
public enum KvCacheRule {
    /** The same layers run for every token, so every cached position has entries for exactly those layers. */
    FIXED_LAYER_SET,
    /**
     * The exit depth never increases along the sequence, so a later token never attends to a layer an earlier
     * token skipped (SkipDecode).
     */
    MONOTONE_EXIT,
    /** Attention runs in every layer and only FFNs or experts are skipped, so the cache is always complete. */
    ATTENTION_ALWAYS_RUNS,
    /** Training-time only (e.g. layer dropout); no cache is involved. */
    TRAINING_ONLY
}
