package dev.kiln.core.train;

import ai.djl.ndarray.NDArray;
import dev.kiln.spi.KilnException;

/**
 * Losses against soft targets, the losses every mixed-sample augmentation needs: softmax cross-entropy, and binary
 * cross-entropy per class (the "BCE + mixup/cutmix" recipe of ResNet Strikes Back, as timm's BinaryCrossEntropy).
 */
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

    /**
     * Binary cross-entropy with logits, averaged over every (sample, class) element, against soft targets or, with
     * {@code threshold >= 0}, against the targets binarised as {@code targets > threshold} (timm's target_threshold).
     * Computed as {@code max(x, 0) - x t + log(1 + exp(-|x|))}, which never overflows.
     *
     * @param logits (N, K)
     * @param targets (N, K), values in [0, 1]
     * @param threshold binarisation threshold, or a negative number to use the soft targets as they are
     */
    public static NDArray binaryCrossEntropy(NDArray logits, NDArray targets, double threshold) {
        if (!logits.getShape().equals(targets.getShape()) || logits.getShape().dimension() != 2) {
            throw new KilnException("targets of shape " + targets.getShape() + " do not match logits of shape "
                    + logits.getShape() + "; both must be (N, K)");
        }
        NDArray t = threshold >= 0 ? targets.gt(threshold).toType(logits.getDataType(), false) : targets;
        NDArray softplus = logits.abs().neg().exp().add(1f).log();
        // relu instead of maximum(0f): DJL's Number overloads hand autograd a scalar tensor whose memory may be freed
        // before backward runs (see GraphScalars)
        return ai.djl.nn.Activation.relu(logits).sub(logits.mul(t)).add(softplus).mean();
    }
}
