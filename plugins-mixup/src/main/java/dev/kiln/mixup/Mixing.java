package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Batch;
import java.util.Arrays;
import java.util.Locale;
import java.util.random.RandomGenerator;

/** Shared pieces of the mixing techniques: validation, partners, targets, boxes. Package-private on purpose. */
final class Mixing {

    private Mixing() {
    }

    /** How a sample finds its partner. */
    enum Pairing {
        /**
         * Sample i mixes with i + N/2 (the first half of the batch with the second); with an odd N the last sample is
         * its own partner. Deterministic, so the loader must shuffle. A per-batch blend of the two halves is one small
         * matrix product over the batch, see {@link #mixHalves}.
         */
        HALVES,
        /** Sample i mixes with N-1-i, as timm does; deterministic, so the loader must shuffle. */
        FLIP,
        /** A permutation drawn from the run's seeded source (may pair a sample with itself, like OpenMixup). */
        PERMUTE;

        static Pairing parse(String word) {
            return valueOf(word.toUpperCase(Locale.ROOT));
        }
    }

    /** One coefficient (and box) for the whole batch, or one per sample. */
    enum Mode {
        BATCH, ELEM;

        static Mode parse(String word) {
            return valueOf(word.toUpperCase(Locale.ROOT));
        }
    }

    /**
     * Rejects batches the techniques cannot mix, with a message naming the technique, the tensor and the value.
     * Integer labels are range-checked and soft labels row-sum-checked here because a bad label would otherwise
     * surface as an opaque native error, or as targets that silently do not sum to 1.
     */
    static void validate(String technique, Batch batch, boolean needsImages) {
        String where = "augmentation '" + technique + "': ";
        if (batch == null || batch.inputs() == null || batch.labels() == null) {
            throw new KilnException(where + "the batch has no inputs or no labels");
        }
        NDArray x = batch.inputs();
        Shape shape = x.getShape();
        DataType dtype = x.getDataType();
        if (dtype != DataType.FLOAT16 && dtype != DataType.FLOAT32 && dtype != DataType.FLOAT64) {
            throw new KilnException(where + "inputs must be float16, float32 or float64, got " + dtype);
        }
        if (needsImages && shape.dimension() != 4) {
            throw new KilnException(where + "inputs must be images (N, C, H, W), got shape " + shape);
        }
        if (shape.dimension() < 1 || shape.get(0) < 1) {
            throw new KilnException(where + "inputs must have a non-empty batch dimension, got shape " + shape);
        }
        long n = shape.get(0);
        int k = batch.numClasses();
        if (k < 1) {
            throw new KilnException(where + "numClasses must be at least 1, got " + k);
        }
        NDArray y = batch.labels();
        Shape ys = y.getShape();
        if (ys.dimension() == 1) {
            if (y.getDataType().isFloating() || y.getDataType() == DataType.BOOLEAN) {
                throw new KilnException(where + "class-index labels must be an integer type, got " + y.getDataType());
            }
            if (ys.get(0) != n) {
                throw new KilnException(where + "labels have " + ys.get(0) + " entries but inputs have " + n
                        + " samples");
            }
            // The range of integer labels is not checked here: that would cost two reductions and two device
            // syncs per batch. One-hot encoding rejects an out-of-range label anyway, and MixingAugmentation turns
            // that failure into labelRangeError's message.
        } else if (ys.dimension() == 2) {
            if (ys.get(0) != n || ys.get(1) != k) {
                throw new KilnException(where + "soft labels must have shape (" + n + ", " + k + "), got " + ys);
            }
            if (!y.getDataType().isFloating()) {
                throw new KilnException(where + "soft labels must be a float type, got " + y.getDataType());
            }
            NDArray f = y.toType(DataType.FLOAT32, false);
            float minValue = f.min().getFloat();
            if (!(minValue >= 0)) {
                throw new KilnException(where + "soft labels must be non-negative probabilities, found " + minValue);
            }
            NDArray sums = f.sum(new int[] {1});
            long worst = sums.sub(1).abs().argMax().getLong();
            float worstSum = sums.getFloat(worst);
            if (!(Math.abs(worstSum - 1) <= 1e-3f)) {
                throw new KilnException(where + "soft label rows must sum to 1, row " + worst + " sums to " + worstSum);
            }
        } else {
            throw new KilnException(where + "labels must be (N) class indices or (N, K) soft targets, got shape " + ys);
        }
    }

    /**
     * The error for integer labels outside [0, K), naming the offending value; null when they are all in range (so the
     * caller's failure had another cause).
     */
    static KilnException labelRangeError(String technique, Batch batch) {
        NDArray y = batch.labels();
        if (y.getShape().dimension() != 1 || y.getDataType().isFloating()) {
            return null;
        }
        long min = y.min().toType(DataType.INT64, false).getLong();
        long max = y.max().toType(DataType.INT64, false).getLong();
        int k = batch.numClasses();
        if (min >= 0 && max < k) {
            return null;
        }
        return new KilnException("augmentation '" + technique + "': labels must lie in [0, " + k + "), found "
                + (min < 0 ? min : max));
    }

    /** Soft targets (N, K) in float32 with label smoothing: on = 1 - eps + eps/K, off = eps/K. */
    static NDArray smoothedTargets(Batch batch, double eps) {
        NDArray soft = batch.softTargets();
        if (eps == 0) {
            // softTargets() hands back the labels themselves when they are float32 soft targets already.
            return soft == batch.labels() ? soft.duplicate() : soft;
        }
        return soft.mul(1 - eps).add(eps / batch.numClasses());
    }

    /** The partner index of every sample. */
    static long[] partners(int n, Pairing pairing, RandomGenerator random) {
        long[] idx = new long[n];
        int half = n / 2;
        for (int i = 0; i < n; i++) {
            switch (pairing) {
                case HALVES:
                    idx[i] = i < half ? i + half : i < 2 * half ? i - half : i;
                    break;
                case FLIP:
                    idx[i] = n - 1 - i;
                    break;
                default:
                    idx[i] = i;
            }
        }
        if (pairing == Pairing.PERMUTE) {
            for (int i = n - 1; i > 0; i--) {
                int j = random.nextInt(i + 1);
                long t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        }
        return idx;
    }

    /**
     * Rows {@code idx} of {@code x} (a copy, never a view). {@code x} may be a strided view, such as a box region of
     * the batch: only the rows it shows are copied.
     */
    static NDArray gather(NDManager scope, NDArray x, long[] idx) {
        // The fixed pairings reverse the batch or swap its halves: one flip kernel (on a (2, N/2, ...) view for the
        // halves) instead of building and applying an index array.
        if (isReversal(idx)) {
            return x.flip(0);
        }
        if (isHalfSwap(idx)) {
            Shape shape = x.getShape();
            return x.reshape(new Shape(2, idx.length / 2).addAll(shape.slice(1))).flip(0).reshape(shape);
        }
        return x.get(scope.create(idx));
    }

    /** Whether {@code idx} pairs the two halves of an even batch: i with i + N/2. */
    static boolean isHalfSwap(long[] idx) {
        int n = idx.length;
        if (n % 2 != 0 || n == 0) {
            return false;
        }
        for (int i = 0; i < n; i++) {
            if (idx[i] != (i + n / 2) % n) {
                return false;
            }
        }
        return true;
    }

    private static boolean isReversal(long[] idx) {
        for (int i = 0; i < idx.length; i++) {
            if (idx[i] != idx.length - 1 - i) {
                return false;
            }
        }
        return true;
    }

    /** The common value of {@code values}, or NaN when they differ (one coefficient per batch vs per sample). */
    static double uniform(double[] values) {
        for (double v : values) {
            if (v != values[0]) {
                return Double.NaN;
            }
        }
        return values[0];
    }

    /** The per-sample coefficients as a column (N, 1, ..., 1) of {@code rank} dimensions in {@code dtype}. */
    static NDArray column(NDManager scope, double[] values, DataType dtype, int rank) {
        long[] dims = new long[rank];
        Arrays.fill(dims, 1);
        dims[0] = values.length;
        return scope.create(values).toType(dtype, false).reshape(new Shape(dims));
    }

    /**
     * {@code lam * x + (1 - lam) * partner} with one coefficient per sample, in the inputs' dtype. Neither input is
     * changed: mixup-cutmix pastes from the partner afterwards.
     */
    static NDArray blend(NDManager scope, NDArray x, NDArray partner, double[] lam) {
        return blend(scope, x, partner, lam, false);
    }

    /**
     * {@link #blend} written into {@code partner}, which the caller owns and no longer needs (a fresh gather): one
     * full-size array fewer than blend allocates, whose cost grows faster with the batch than its arithmetic does
     * (per-sample mixup: 9% of the call at 128 x 1x28x28, 23% at 128 x 3x32x32). The values are blend's, bit for bit.
     */
    static NDArray blendIntoPartner(NDManager scope, NDArray x, NDArray partner, double[] lam) {
        return blend(scope, x, partner, lam, true);
    }

    /** {@code (1 - lam) * partner + lam * x}, the scaled partner a new array or, with intoPartner, partner itself. */
    private static NDArray blend(NDManager scope, NDArray x, NDArray partner, double[] lam, boolean intoPartner) {
        double shared = uniform(lam);
        if (!Double.isNaN(shared)) {
            // One coefficient for the batch: scalar kernels instead of a broadcast column.
            NDArray scaled = intoPartner ? partner.muli(1 - shared) : partner.mul(1 - shared);
            return scaled.addi(x.mul(shared));
        }
        NDArray l = column(scope, lam, x.getDataType(), x.getShape().dimension());
        NDArray partnerShare = l.neg().add(1);
        NDArray scaled = intoPartner ? partner.muli(partnerShare) : partner.mul(partnerShare);
        return scaled.addi(x.mul(l));
    }

    /**
     * {@code lam * x + (1 - lam) * x[partner]}, in the inputs' dtype. With one coefficient for the batch and the halves
     * pairing this is one matrix product ({@link #mixHalves}); otherwise the partner rows are gathered and blended.
     */
    static NDArray mix(NDManager scope, NDArray x, long[] partner, double[] lam) {
        double shared = uniform(lam);
        if (!Double.isNaN(shared) && isHalfSwap(partner)) {
            return mixHalves(scope, x, shared, 1.0);
        }
        // gather always returns a new array (a flip or an index copy), so the blend may write into it.
        return blendIntoPartner(scope, x, gather(scope, x, partner), lam);
    }

    /**
     * {@code scale * (lam * a + (1 - lam) * a[partner])} for the halves pairing of an even batch, as one product
     * {@code [[lam, 1 - lam], [1 - lam, lam]] * scale @ a.reshape(2, N/2 * D)}: the two halves A and B come out as
     * {@code lam A + (1 - lam) B} and {@code (1 - lam) A + lam B}. One kernel reads the batch once and writes the result
     * once, where the flip-and-blend form needs a flip, two scaled copies and an add (about 4.5 passes over the batch).
     * Works for any rank and dtype of {@code a}; the result is a new array in {@code a}'s dtype.
     */
    static NDArray mixHalves(NDManager scope, NDArray a, double lam, double scale) {
        return mixHalves(a, halvesMatrix(scope, lam, scale, a.getDataType()));
    }

    /** {@code m @ a.reshape(2, -1)}, back in {@code a}'s shape; m is a 2 x 2 mixing matrix in a's dtype. */
    private static NDArray mixHalves(NDArray a, NDArray m) {
        return m.matMul(a.reshape(2, -1)).reshape(a.getShape());
    }

    /** {@code scale * [[lam, 1 - lam], [1 - lam, lam]]} in {@code dtype}. */
    private static NDArray halvesMatrix(NDManager scope, double lam, double scale, DataType dtype) {
        double keep = lam * scale;
        double swap = (1 - lam) * scale;
        if (dtype == DataType.FLOAT64) {
            return scope.create(new double[] {keep, swap, swap, keep}, new Shape(2, 2));
        }
        NDArray m = scope.create(new float[] {(float) keep, (float) swap, (float) swap, (float) keep}, new Shape(2, 2));
        return dtype == DataType.FLOAT32 ? m : m.toType(dtype, false);
    }

    /**
     * Mixed inputs and mixed, smoothed targets of one batch with the same partners and coefficients: {@link #mix}
     * and {@link #mixedTargets} in one call, so that the product path creates its mixing matrix once when inputs and
     * targets can share it (float32 inputs, no smoothing). Returns {inputs, targets}.
     */
    static NDArray[] mixBoth(NDManager scope, Batch batch, double eps, long[] partner, double[] lam) {
        double shared = uniform(lam);
        if (Double.isNaN(shared) || !isHalfSwap(partner)) {
            return new NDArray[] {mix(scope, batch.inputs(), partner, lam),
                mixedTargets(scope, batch, eps, partner, lam)};
        }
        NDArray x = batch.inputs();
        NDArray m = halvesMatrix(scope, shared, 1.0, x.getDataType());
        NDArray inputs = mixHalves(x, m);
        NDArray targetMatrix = eps == 0 && x.getDataType() == DataType.FLOAT32 ? m
                : halvesMatrix(scope, shared, 1 - eps, DataType.FLOAT32);
        NDArray targets = mixHalves(batch.softTargets(), targetMatrix);
        return new NDArray[] {inputs, eps == 0 ? targets : targets.addi(eps / batch.numClasses())};
    }

    /**
     * The mixed, smoothed targets {@code lam * s(y) + (1 - lam) * s(y[partner])} (N, K) float32, where s smooths a
     * one-hot row. With one coefficient and the halves pairing the smoothing is folded into the mixing product:
     * {@code (1 - eps) (lam y + (1 - lam) y') + eps / K}, the same value, one kernel and at most one add.
     */
    static NDArray mixedTargets(NDManager scope, Batch batch, double eps, long[] partner, double[] lam) {
        double shared = uniform(lam);
        if (!Double.isNaN(shared) && isHalfSwap(partner)) {
            NDArray mixed = mixHalves(scope, batch.softTargets(), shared, 1 - eps);
            return eps == 0 ? mixed : mixed.addi(eps / batch.numClasses());
        }
        return mixTargets(scope, smoothedTargets(batch, eps), partner, lam);
    }

    /**
     * The batch with the half-open box {y0, y1, x0, x1} (over H and W of an NCHW batch) filled from each sample's
     * partner: a copy of the batch, then only the box region of the partners is copied in. Used when one box serves
     * the whole batch, where a per-pixel mask and a select would read and write the full batch several times.
     */
    static NDArray pasteBox(NDManager scope, NDArray x, int[] box, long[] partner) {
        NDArray out = x.duplicate();
        if (box[1] > box[0] && box[3] > box[2]) {
            pastePartnerRows(scope, out, box, x, box, partner);
        }
        return out;
    }

    /**
     * Writes the {@code from} region of {@code source[partner[i]]} into the {@code box} region of {@code out[i]} for
     * every sample i. {@code source} is an (N, C, h, w) batch and {@code from} a box of it with the size of
     * {@code box}, or null for the whole of {@code source} (a resized patch). For the halves pairing the two halves are
     * written crosswise, each straight from its region of {@code source} with no intermediate view or permuted copy;
     * otherwise the permuted rows of the region are gathered first. At batch-128 sizes a paste costs per native call
     * (a view or a box write costs a quarter to a half of copying a 1x28x28 batch), so the call count is what is
     * saved.
     */
    static void pastePartnerRows(NDManager scope, NDArray out, int[] box, NDArray source, int[] from,
            long[] partner) {
        int n = partner.length;
        if (isHalfSwap(partner)) {
            int half = n / 2;
            out.set(region(0, half, box), source.get(region(half, n, from)));
            out.set(region(half, n, box), source.get(region(0, half, from)));
        } else {
            NDArray rows = from == null ? source : source.get(region(0, n, from));
            out.set(region(0, n, box), gather(scope, rows, partner));
        }
    }

    /**
     * The index of rows [rowStart, rowEnd), all channels, and the half-open box {y0, y1, x0, x1} (all pixels when
     * {@code box} is null). Built element by element: parsing the equivalent index string costs about as much as
     * the native call it feeds.
     */
    private static NDIndex region(long rowStart, long rowEnd, int[] box) {
        NDIndex index = new NDIndex().addSliceDim(rowStart, rowEnd).addAllDim();
        return box == null ? index.addAllDim(2) : index.addSliceDim(box[0], box[1]).addSliceDim(box[2], box[3]);
    }

    /** {@code lam * t + (1 - lam) * t[partner]} with one coefficient per sample; t is (N, K) float32. */
    static NDArray mixTargets(NDManager scope, NDArray targets, long[] partner, double[] lam) {
        double shared = uniform(lam);
        if (!Double.isNaN(shared)) {
            return gather(scope, targets, partner).muli(1 - shared).addi(targets.mul(shared));
        }
        NDArray l = column(scope, lam, DataType.FLOAT32, 2);
        return targets.mul(l).add(gather(scope, targets, partner).mul(l.neg().add(1)));
    }

    /**
     * timm's {@code rand_bbox}: cut = int(side * ratio) on each axis, centre uniform over the image, the box
     * {@code centre +- cut // 2} clipped to the image. Returns {y0, y1, x0, x1}, half-open. H and W are kept apart on
     * purpose: several published implementations swap them, which only shows on non-square images.
     */
    static int[] box(RandomGenerator random, int height, int width, double ratio) {
        int cutH = (int) (height * ratio);
        int cutW = (int) (width * ratio);
        int cy = random.nextInt(height);
        int cx = random.nextInt(width);
        int y0 = clamp(cy - cutH / 2, height);
        int y1 = clamp(cy + cutH / 2, height);
        int x0 = clamp(cx - cutW / 2, width);
        int x1 = clamp(cx + cutW / 2, width);
        return new int[] {y0, y1, x0, x1};
    }

    private static int clamp(int v, int size) {
        return Math.max(0, Math.min(size, v));
    }

    /** The fraction of pixels a box leaves to the original image: 1 - area / (H * W). */
    static double keptFraction(int[] box, int height, int width) {
        return 1.0 - (double) (box[1] - box[0]) * (box[3] - box[2]) / ((double) height * width);
    }

    /**
     * Boolean masks (M, 1, H, W), true inside each box, built from broadcast comparisons with row and column
     * ranges so that per-sample boxes cost no Java loop over pixels.
     */
    static NDArray boxMask(NDManager scope, int[][] boxes, int height, int width) {
        int m = boxes.length;
        int[] y0 = new int[m];
        int[] y1 = new int[m];
        int[] x0 = new int[m];
        int[] x1 = new int[m];
        for (int i = 0; i < m; i++) {
            y0[i] = boxes[i][0];
            y1[i] = boxes[i][1];
            x0[i] = boxes[i][2];
            x1[i] = boxes[i][3];
        }
        Shape col = new Shape(m, 1, 1, 1);
        NDArray rows = scope.arange(height).reshape(1, 1, height, 1);
        NDArray cols = scope.arange(width).reshape(1, 1, 1, width);
        NDArray inRows = rows.gte(scope.create(y0).reshape(col)).logicalAnd(rows.lt(scope.create(y1).reshape(col)));
        NDArray inCols = cols.gte(scope.create(x0).reshape(col)).logicalAnd(cols.lt(scope.create(x1).reshape(col)));
        return inRows.logicalAnd(inCols);
    }

    /** Where {@code mask} is true take {@code a}, elsewhere {@code b}; the mask broadcasts over channels. */
    static NDArray select(NDArray mask, NDArray a, NDArray b) {
        // DJL's where refuses to broadcast the condition itself, so expand it (a view, no copy) first.
        return NDArrays.where(mask.broadcast(a.getShape()), a, b);
    }

    /** A double array filled with one value. */
    static double[] filled(int n, double value) {
        double[] out = new double[n];
        Arrays.fill(out, value);
        return out;
    }
}
