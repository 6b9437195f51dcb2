package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.LossTerm;
import dev.kiln.spi.augment.MixContext;
import java.util.Locale;

/**
 * Decoupled Mixup (Liu et al., NeurIPS 2023, "Harnessing Hard Mixed Samples with Decoupled Regularizer"): mixup
 * inputs and targets plus a loss term that scores each mixed class against every class except the other mixed one,
 * {@code -log(exp(z_a) / sum_{c != b} exp(z_c))}, so that a hard mixed sample is not rewarded for splitting its
 * confidence between a and b. Weights: {@code eta_a = eta * lam^p}, {@code eta_b = eta * (1 - lam)^p}; mode
 * {@code less} keeps only the class with the smaller share, {@code more} only the larger, {@code both} both, as in
 * OpenMixup's {@code eta_weight}. Samples mixed with their own class, and batches with lam of 0 or 1, get no extra
 * term (their target is one-hot, where the regulariser is undefined).
 */
final class DecoupledMixup extends MixingAugmentation {
    /** Below this share a class counts as absent, as OpenMixup's eps. */
    private static final double ABSENT = 1e-3;

    enum EtaMode { BOTH, LESS, MORE }

    private final double alpha;
    private final double eta;
    private final EtaMode etaMode;
    private final double power;
    private final Mixing.Pairing pairing;

    DecoupledMixup(double alpha, double eta, String etaMode, double power, Mixing.Pairing pairing, double smoothing,
            int stopEpoch) {
        super("decoupled", smoothing, stopEpoch, false);
        this.alpha = alpha;
        this.eta = eta;
        this.etaMode = EtaMode.valueOf(etaMode.toUpperCase(Locale.ROOT));
        this.power = power;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        long[] partner = Mixing.partners(n, pairing, context.random());
        double lam = BetaSampler.beta(context.random(), alpha, alpha);
        double[] lams = Mixing.filled(n, lam);
        NDArray[] both = Mixing.mixBoth(scope, batch, smoothing, partner, lams);
        NDArray mixed = both[0];
        NDArray targets = both[1];
        long[] classes = classes(batch);
        long[] partnerClasses = new long[n];
        for (int i = 0; i < n; i++) {
            partnerClasses[i] = classes[(int) partner[i]];
        }
        double[] weights = weights(lam);
        LossTerm term = weights[0] == 0 && weights[1] == 0 || batch.numClasses() < 2 ? null
                : new Regulariser(classes, partnerClasses, weights[0], weights[1], batch.numClasses());
        return new Mixed(mixed, targets, term);
    }

    /** {eta_a, eta_b} for a batch mixed with coefficient {@code lam}. */
    double[] weights(double lam) {
        if (eta == 0 || lam < ABSENT || lam > 1 - ABSENT) {
            return new double[] {0, 0};
        }
        double a = eta * Math.pow(lam, power);
        double b = eta * Math.pow(1 - lam, power);
        switch (etaMode) {
            case LESS:
                return lam < 0.5 ? new double[] {a, 0} : new double[] {0, b};
            case MORE:
                return lam >= 0.5 ? new double[] {a, 0} : new double[] {0, b};
            default:
                return new double[] {a, b};
        }
    }

    /** Hard class of every sample: the index, or the arg-max of a soft label. */
    private static long[] classes(Batch batch) {
        NDArray labels = batch.labels();
        NDArray idx = labels.getShape().dimension() == 2 ? labels.argMax(1) : labels;
        return idx.toType(DataType.INT64, false).toLongArray();
    }

    /**
     * The decoupled term on logits. Host arrays only are captured, so the term outlives the mixing call's scope and
     * creates what it needs on the logits' own manager and device.
     */
    static final class Regulariser implements LossTerm {
        private final long[] a;
        private final long[] b;
        private final double etaA;
        private final double etaB;
        private final int numClasses;

        Regulariser(long[] a, long[] b, double etaA, double etaB, int numClasses) {
            this.a = a;
            this.b = b;
            this.etaA = etaA;
            this.etaB = etaB;
            this.numClasses = numClasses;
        }

        @Override
        public NDArray compute(NDArray logits) {
            Shape expected = new Shape(a.length, numClasses);
            if (!logits.getShape().equals(expected)) {
                throw new KilnException("augmentation 'decoupled': logits must have shape " + expected
                        + " (the mixed batch and its classes), got " + logits.getShape());
            }
            NDManager m = logits.getManager();
            NDArray z = logits.toType(DataType.FLOAT32, false);
            NDArray oneHotA = m.create(a).oneHot(numClasses);
            NDArray oneHotB = m.create(b).oneHot(numClasses);
            // Shift by the row maximum so exp never overflows; it cancels in the log-sum-exp.
            NDArray shift = z.max(new int[] {1}, true);
            NDArray e = z.sub(shift).exp();
            NDArray zA = z.mul(oneHotA).sum(new int[] {1});
            NDArray zB = z.mul(oneHotB).sum(new int[] {1});
            NDArray lseWithoutB = e.mul(oneHotB.neg().add(1)).sum(new int[] {1}).log().add(shift.squeeze(1));
            NDArray lseWithoutA = e.mul(oneHotA.neg().add(1)).sum(new int[] {1}).log().add(shift.squeeze(1));
            // The weights are tensors of the logits' manager, not Number operands: DJL closes the scalar tensor of a
            // Number overload as soon as the op returns, and autograd would read its freed memory in backward.
            NDArray perSample = lseWithoutB.sub(zA).mul(m.create((float) etaA))
                    .add(lseWithoutA.sub(zB).mul(m.create((float) etaB)));
            double[] distinct = new double[a.length];
            for (int i = 0; i < a.length; i++) {
                distinct[i] = a[i] != b[i] ? 1 : 0;
            }
            return perSample.mul(m.create(distinct).toType(DataType.FLOAT32, false)).mean();
        }
    }
}
