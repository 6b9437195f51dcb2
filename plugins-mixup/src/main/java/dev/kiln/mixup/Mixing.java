package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
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
        for (int i = 0; i < n; i++) {
            idx[i] = pairing == Pairing.FLIP ? n - 1 - i : i;
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

    /** Rows {@code idx} of {@code x} (a copy, never a view). */
    static NDArray gather(NDManager scope, NDArray x, long[] idx) {
        // The default pairing reverses the batch: one flip kernel instead of building and applying an index array.
        if (isReversal(idx)) {
            return x.flip(0);
        }
        return x.get(scope.create(idx));
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
    private static double uniform(double[] values) {
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

    /** {@code lam * x + (1 - lam) * partner} with one coefficient per sample, in the inputs' dtype. */
    static NDArray blend(NDManager scope, NDArray x, NDArray partner, double[] lam) {
        double shared = uniform(lam);
        if (!Double.isNaN(shared)) {
            // One coefficient for the batch: scalar kernels instead of a broadcast column. Neither input is changed:
            // callers reuse the partner afterwards (mixup-cutmix pastes from it).
            return x.mul(shared).addi(partner.mul(1 - shared));
        }
        NDArray l = column(scope, lam, x.getDataType(), x.getShape().dimension());
        return x.mul(l).add(partner.mul(l.neg().add(1)));
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
