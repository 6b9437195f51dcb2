package dev.kiln.mixup;

import ai.djl.modality.cv.Image;
import ai.djl.modality.cv.util.NDImageUtils;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;

/**
 * ResizeMix (Qin et al., arXiv 2012.11101): the whole partner image, shrunk to a box whose side ratio
 * {@code tau ~ U(scale-min, scale-max)}, is pasted at a uniform position (clipped at the border). The shrink is
 * nearest-neighbour by default, as OpenMixup's reference ({@code interpolate_mode='nearest'}), or antialiased bilinear. Unlike CutMix the
 * pasted region always shows the partner's whole object, so the label share is exactly the pasted area:
 * {@code lam = 1 - box_area / (H * W)}. One box per batch.
 */
final class ResizeMix extends MixingAugmentation {
    private final double scaleMin;
    private final double scaleMax;
    private final Mixing.Pairing pairing;
    private final boolean bilinear;

    ResizeMix(double scaleMin, double scaleMax, Mixing.Pairing pairing, boolean bilinear, double smoothing,
            int stopEpoch) {
        super("resizemix", smoothing, stopEpoch, true);
        this.scaleMin = scaleMin;
        this.scaleMax = scaleMax;
        this.pairing = pairing;
        this.bilinear = bilinear;
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
        NDArray patch = bilinear ? resize(x, boxH, boxW) : nearest(scope, x, boxH, boxW);
        Mixing.pastePartnerRows(scope, mixed, box, patch, null, partner);
        double lam = Mixing.keptFraction(box, height, width);
        return new Mixed(mixed, Mixing.mixedTargets(scope, batch, smoothing, partner, Mixing.filled(n, lam)));
    }

    /**
     * Nearest-neighbour resize of an NCHW batch as PyTorch's {@code interpolate(mode='nearest')}: output index i reads
     * input index {@code min(floor(i * (in / out)), in - 1)} with the ratio in float32. One gather along the flattened
     * pixel axis of {@code (N * C, H * W)}, with the patch's source pixels {@code row * W + col} as one index row
     * broadcast (a view) over the N * C planes: it reads only the patch's pixels, and in scratch timings cost a third
     * (1x28x28) to a fifth (3x32x32) of the two advanced-index passes (rows, then columns) that it replaces. The index
     * is built on the device from the per-axis indices (sizes H and W), so no host loop runs over the patch.
     */
    static NDArray nearest(NDManager scope, NDArray nchw, int height, int width) {
        Shape shape = nchw.getShape();
        long planes = shape.get(0) * shape.get(1);
        int inH = (int) shape.get(2);
        int inW = (int) shape.get(3);
        long[] rowStarts = nearestIndices(inH, height);
        for (int i = 0; i < height; i++) {
            rowStarts[i] *= inW;
        }
        NDArray source = scope.create(rowStarts).reshape(height, 1).add(scope.create(nearestIndices(inW, width)))
                .reshape(1, (long) height * width);
        return nchw.reshape(planes, (long) inH * inW).gather(source.broadcast(planes, (long) height * width), 1)
                .reshape(shape.get(0), shape.get(1), height, width);
    }

    static long[] nearestIndices(int in, int out) {
        float ratio = (float) in / out;
        long[] idx = new long[out];
        for (int i = 0; i < out; i++) {
            idx[i] = Math.min((long) Math.floor(i * ratio), in - 1);
        }
        return idx;
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
