package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;

/**
 * mixup (Zhang et al., ICLR 2018): {@code x = lam * x_i + (1 - lam) * x_j}, targets mixed with the same coefficient,
 * {@code lam ~ Beta(alpha, alpha)}, one coefficient per batch or one per sample. Works on any input rank.
 */
final class Mixup extends MixingAugmentation {
    private final double alpha;
    private final Mixing.Mode mode;
    private final Mixing.Pairing pairing;

    Mixup(double alpha, Mixing.Mode mode, Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        super("mixup", smoothing, stopEpoch, false);
        this.alpha = alpha;
        this.mode = mode;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        long[] partner = Mixing.partners(n, pairing, context.random());
        double[] lam = mode == Mixing.Mode.BATCH
                ? Mixing.filled(n, BetaSampler.beta(context.random(), alpha, alpha))
                : BetaSampler.symmetric(context.random(), alpha, n);
        NDArray[] mixed = Mixing.mixBoth(scope, batch, smoothing, partner, lam);
        return new Mixed(mixed[0], mixed[1]);
    }
}
