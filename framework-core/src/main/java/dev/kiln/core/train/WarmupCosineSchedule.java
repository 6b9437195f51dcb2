package dev.kiln.core.train;

import ai.djl.training.tracker.Tracker;

/**
 * Learning rate per optimisation step: a linear warm-up from {@code base / warmup} to {@code base} over the first
 * {@code warmup} steps, then a half cosine from {@code base} down to {@code min} at the last step.
 *
 * <p>Step {@code s < warmup} gets {@code base * (s + 1) / warmup}, so the first step already moves the weights; step
 * {@code s >= warmup} gets {@code min + (base - min) * (1 + cos(pi * p)) / 2} with
 * {@code p = (s - warmup) / (total - warmup - 1)}, so the last step uses {@code min} exactly. Also a DJL
 * {@link Tracker}, for use with DJL's own optimisers.
 */
public final class WarmupCosineSchedule implements Tracker {
    private final double base;
    private final double min;
    private final long warmup;
    private final long total;

    /**
     * @param base peak learning rate
     * @param min final learning rate
     * @param warmup warm-up steps (0 for none)
     * @param total total optimisation steps of the run
     */
    public WarmupCosineSchedule(double base, double min, long warmup, long total) {
        if (!(base > 0) || !(min >= 0) || min > base || warmup < 0 || total < 1) {
            throw new IllegalArgumentException("invalid schedule: base " + base + ", min " + min + ", warmup "
                    + warmup + ", total " + total);
        }
        this.base = base;
        this.min = min;
        this.warmup = warmup;
        this.total = total;
    }

    /** The learning rate at step {@code step} (from 0); steps past the end keep the final rate. */
    public double at(long step) {
        if (step < warmup) {
            return base * (step + 1) / warmup;
        }
        long span = total - warmup - 1;
        // A one-step cosine phase keeps the peak rate rather than jumping straight to the minimum.
        double progress = span <= 0 ? 0 : Math.min(1.0, (double) (step - warmup) / span);
        return min + (base - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }

    @Override
    public float getNewValue(int numUpdate) {
        return (float) at(numUpdate);
    }
}
