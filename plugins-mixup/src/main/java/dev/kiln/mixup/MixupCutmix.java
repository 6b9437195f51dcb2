package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import java.util.random.RandomGenerator;

/**
 * timm's {@code Mixup} composition: with probability {@code prob} the batch is mixed, by CutMix with probability
 * {@code switch-prob} and by mixup otherwise; an alpha of 0 turns that half off. Unmixed batches still get smoothed
 * targets, as in timm. In {@code elem} mode the gate, the choice and the coefficient are drawn per sample, and both
 * operations are expressed as per-sample coefficient columns and box masks so no Java loop touches pixels.
 */
final class MixupCutmix extends MixingAugmentation {
    private final double mixupAlpha;
    private final double cutmixAlpha;
    private final double prob;
    private final double switchProb;
    private final Mixing.Mode mode;
    private final Mixing.Pairing pairing;

    MixupCutmix(double mixupAlpha, double cutmixAlpha, double prob, double switchProb, Mixing.Mode mode,
            Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        super("mixup-cutmix", smoothing, stopEpoch, true);
        this.mixupAlpha = mixupAlpha;
        this.cutmixAlpha = cutmixAlpha;
        this.prob = prob;
        this.switchProb = switchProb;
        this.mode = mode;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        RandomGenerator random = context.random();
        int n = batch.size();
        NDArray x = batch.inputs();
        int height = (int) x.getShape().get(2);
        int width = (int) x.getShape().get(3);
        long[] partner = Mixing.partners(n, pairing, random);
        int draws = mode == Mixing.Mode.BATCH ? 1 : n;
        double[] blendLam = Mixing.filled(n, 1.0);
        double[] targetLam = Mixing.filled(n, 1.0);
        int[][] boxes = new int[draws][];
        boolean anyBlend = false;
        for (int i = 0; i < draws; i++) {
            boxes[i] = new int[] {0, 0, 0, 0};
            if (random.nextDouble() >= prob) {
                continue;
            }
            boolean cut = cutmixAlpha > 0 && (mixupAlpha <= 0 || random.nextDouble() < switchProb);
            if (cut) {
                double drawn = BetaSampler.beta(random, cutmixAlpha, cutmixAlpha);
                boxes[i] = Mixing.box(random, height, width, Math.sqrt(1 - drawn));
                targetLam[i] = Mixing.keptFraction(boxes[i], height, width);
            } else {
                blendLam[i] = BetaSampler.beta(random, mixupAlpha, mixupAlpha);
                targetLam[i] = blendLam[i];
                anyBlend = true;
            }
        }
        if (draws == 1) {
            java.util.Arrays.fill(blendLam, blendLam[0]);
            java.util.Arrays.fill(targetLam, targetLam[0]);
            // One decision for the batch: pay only for what was picked (nothing, a box paste, or a blend).
            if (!anyBlend && targetLam[0] == 1.0) {
                return unmixed(batch);
            }
            if (anyBlend) {
                NDArray[] mixed = Mixing.mixBoth(scope, batch, smoothing, partner, blendLam);
                return new Mixed(mixed[0], mixed[1]);
            }
            return new Mixed(Mixing.pasteBox(scope, x, boxes[0], partner),
                    Mixing.mixedTargets(scope, batch, smoothing, partner, targetLam));
        }
        NDArray xp = Mixing.gather(scope, x, partner);
        // A sample that is cut has blend coefficient 1, so the blend leaves it as it was before the paste.
        NDArray blended = anyBlend ? Mixing.blend(scope, x, xp, blendLam) : x;
        NDArray mixed = Mixing.select(Mixing.boxMask(scope, boxes, height, width), xp, blended);
        NDArray targets = Mixing.mixTargets(scope, Mixing.smoothedTargets(batch, smoothing), partner, targetLam);
        return new Mixed(mixed, targets);
    }
}
