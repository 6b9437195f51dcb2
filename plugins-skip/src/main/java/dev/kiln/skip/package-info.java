/**
 * Skip policies: a fixed evenly spaced layer set (Unified Layer Skipping), a contiguous dropped block, SkipDecode's
 * monotone exit schedule, FFN-SkipLLM's cosine-saturation FFN skipping and LayerSkip's training-time layer dropout.
 * Each policy declares the {@link dev.kiln.spi.skip.KvCacheRule} that keeps a decoder's KV cache valid.
 */
package dev.kiln.skip;
