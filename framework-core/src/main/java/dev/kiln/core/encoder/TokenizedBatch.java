package dev.kiln.core.encoder;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * A right-padded batch of token ids for a BERT encoder; all three arrays are {@code [batch][length]}.
 *
 * @param inputIds token ids, {@code [PAD]} (0) after each sequence's end
 * @param attentionMask 1 for real tokens, 0 for padding
 * @param tokenTypeIds segment ids (all 0 for single sentences)
 */
public record TokenizedBatch(long[][] inputIds, long[][] attentionMask, long[][] tokenTypeIds) {

    /** Number of sequences. */
    public int batchSize() {
        return inputIds.length;
    }

    /** Padded length (the longest sequence's length). */
    public int length() {
        return inputIds.length == 0 ? 0 : inputIds[0].length;
    }

    /** Input ids as an int64 [B, T] array. */
    public NDArray ids(NDManager manager) {
        return manager.create(inputIds);
    }

    /** Attention mask as an int64 [B, T] array. */
    public NDArray mask(NDManager manager) {
        return manager.create(attentionMask);
    }

    /** Token type ids as an int64 [B, T] array. */
    public NDArray types(NDManager manager) {
        return manager.create(tokenTypeIds);
    }
}
