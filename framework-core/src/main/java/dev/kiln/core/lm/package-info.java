/**
 * A small byte-level decoder-only transformer with a per-layer KV cache, used to run skip policies for real:
 * {@link dev.kiln.core.lm.DecoderLm#generate} consults a {@link dev.kiln.spi.skip.SkipPolicy} per layer per pass.
 */
package dev.kiln.core.lm;
