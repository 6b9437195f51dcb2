package dev.kiln.core.train;

import ai.djl.ndarray.NDArray;
import dev.kiln.spi.KilnException;

/** Cross-entropy against soft targets, the loss every mixed-sample augmentation needs. */
public final class SoftTargetLoss {
    private SoftTargetLoss() {
    }

    /**
     * {@code -(targets * logSoftmax(logits)).sum(1).mean()}: for one-hot targets this is the usual cross-entropy.
     *
     * @param logits (N, K)
     * @param targets (N, K), rows summing to 1
     * @return a scalar, differentiable with respect to {@code logits}
     */
    public static NDArray crossEntropy(NDArray logits, NDArray targets) {
        if (!logits.getShape().equals(targets.getShape()) || logits.getShape().dimension() != 2) {
            throw new KilnException("soft targets of shape " + targets.getShape() + " do not match logits of shape "
                    + logits.getShape() + "; both must be (N, K)");
        }
        return logits.logSoftmax(1).mul(targets).sum(new int[] {1}).mean().neg();
    }
}
