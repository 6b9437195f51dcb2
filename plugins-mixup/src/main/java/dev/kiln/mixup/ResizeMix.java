package dev.kiln.mixup;

import ai.djl.modality.cv.Image;
import ai.djl.modality.cv.util.NDImageUtils;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;

/**
 * ResizeMix (Qin et al., arXiv 2012.11101): the whole partner image, shrunk (bilinear) to a box whose side ratio
 * {@code tau ~ U(scale-min, scale-max)}, is pasted at a uniform position (clipped at the border). Unlike CutMix the
 * pasted region always shows the partner's whole object, so the label share is exactly the pasted area:
 * {@code lam = 1 - box_area / (H * W)}. One box per batch.
 */
final class ResizeMix extends MixingAugmentation {
    private final double scaleMin;
    private final double scaleMax;
    private final Mixing.Pairing pairing;

    ResizeMix(double scaleMin, double scaleMax, Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        super("resizemix", smoothing, stopEpoch, true);
        this.scaleMin = scaleMin;
        this.scaleMax = scaleMax;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        NDArray x = batch.inputs();
        int height = (int) x.getShape().get(2);
        int width = (int) x.getShape().get(3);
        long[] partner = Mixing.partners(n, pairing, context.random());
        double tau = scaleMin + (scaleMax - scaleMin) * context.random().nextDouble();
        int[] box = Mixing.box(context.random(), height, width, tau);
        int boxH = box[1] - box[0];
        int boxW = box[3] - box[2];
        if (boxH == 0 || boxW == 0) {
            // A box clipped to nothing pastes nothing; the resize of an empty target would fail.
            return unmixed(batch);
        }
        // The resize works on each sample alone, so resizing the batch and then taking the partners' rows of the
        // small patch gives the same pixels as resizing the partners, and only the patch is permuted.
        NDArray mixed = x.duplicate();
        Mixing.pastePartnerRows(scope, mixed, box, resize(x, boxH, boxW), partner);
        double lam = Mixing.keptFraction(box, height, width);
        return new Mixed(mixed, Mixing.mixedTargets(scope, batch, smoothing, partner, Mixing.filled(n, lam)));
    }

    /**
     * Bilinear resize of an NCHW batch, keeping its dtype; DJL's image resize wants channels last. The PyTorch engine
     * antialiases when shrinking (triangle filter widened by the scale, as PIL and torchvision's antialias=True), so
     * a partner shrunk to a tenth of its side is averaged rather than aliased.
     */
    static NDArray resize(NDArray nchw, int height, int width) {
        DataType dtype = nchw.getDataType();
        NDArray nhwc = nchw.toType(DataType.FLOAT32, false).transpose(0, 2, 3, 1);
        NDArray resized = NDImageUtils.resize(nhwc, width, height, Image.Interpolation.BILINEAR);
        return resized.transpose(0, 3, 1, 2).toType(dtype, false);
    }
}
