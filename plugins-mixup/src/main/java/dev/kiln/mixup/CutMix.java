package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;

/**
 * CutMix (Yun et al., ICCV 2019) with timm's box: a box of side {@code int(side * sqrt(1 - lam))} around a uniform
 * centre, clipped at the border, filled from the partner. The target coefficient is always the corrected one,
 * {@code 1 - box_area / (H * W)}, so clipped boxes do not overstate the original's share ("true lambda").
 */
final class CutMix extends MixingAugmentation {
    private final double alpha;
    private final Mixing.Mode mode;
    private final Mixing.Pairing pairing;

    CutMix(double alpha, Mixing.Mode mode, Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        super("cutmix", smoothing, stopEpoch, true);
        this.alpha = alpha;
        this.mode = mode;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        NDArray x = batch.inputs();
        int height = (int) x.getShape().get(2);
        int width = (int) x.getShape().get(3);
        long[] partner = Mixing.partners(n, pairing, context.random());
        int boxes = mode == Mixing.Mode.BATCH ? 1 : n;
        int[][] box = new int[boxes][];
        double[] lam = new double[n];
        for (int i = 0; i < boxes; i++) {
            double drawn = BetaSampler.beta(context.random(), alpha, alpha);
            box[i] = Mixing.box(context.random(), height, width, Math.sqrt(1 - drawn));
            lam[i] = Mixing.keptFraction(box[i], height, width);
        }
        NDArray mixed;
        if (boxes == 1) {
            java.util.Arrays.fill(lam, lam[0]);
            // One box for the batch: copy the batch and overwrite only the box from the partners.
            mixed = Mixing.pasteBox(scope, x, box[0], partner);
        } else {
            NDArray mask = Mixing.boxMask(scope, box, height, width);
            mixed = Mixing.select(mask, Mixing.gather(scope, x, partner), x);
        }
        NDArray targets = Mixing.mixedTargets(scope, batch, smoothing, partner, lam);
        return new Mixed(mixed, targets);
    }
}
