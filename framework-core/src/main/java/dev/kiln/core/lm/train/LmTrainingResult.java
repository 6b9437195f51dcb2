package dev.kiln.core.lm.train;

import java.util.List;

/**
 * What a training run did.
 *
 * @param losses mean training loss (nats per byte) of every step, in order
 * @param seconds wall time of the optimisation loop
 * @param layersRun total blocks run over all steps (below {@code steps * layers} when layer dropout is on)
 * @param skippedSteps steps whose gradient was not finite and so was not applied
 */
public record LmTrainingResult(List<Double> losses, double seconds, long layersRun, int skippedSteps) {
    /** A run with no skipped steps. */
    public LmTrainingResult(List<Double> losses, double seconds, long layersRun) {
        this(losses, seconds, layersRun, 0);
    }

    /** Mean of the last {@code n} step losses (all of them when fewer). */
    public double tailLoss(int n) {
        int from = Math.max(0, losses.size() - n);
        return losses.subList(from, losses.size()).stream().mapToDouble(Double::doubleValue).average().orElse(
                Double.NaN);
    }
}
