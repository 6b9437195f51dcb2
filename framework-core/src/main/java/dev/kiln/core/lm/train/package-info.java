/**
 * Byte-level next-token training of {@link dev.kiln.core.lm.DecoderLm}: a differentiable teacher-forced forward
 * with optional layer dropout through a {@link dev.kiln.spi.skip.SkipPolicy} in {@code Phase.TRAIN}, AdamW with a
 * warm-up cosine schedule, validation perplexity (with and without a skip policy) and safetensors checkpoints.
 */
package dev.kiln.core.lm.train;
