package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** Checks and tensor helpers shared by the compressors. */
final class Weights {

    private Weights() {
    }

    /**
     * A float32 copy of {@code weight} owned by {@code scope}, after checking that it is a non-empty, finite,
     * floating-point tensor. Working on a copy is what keeps the caller's tensor unmodified even though several
     * compressors write into their working array.
     */
    static NDArray prepare(String technique, String name, NDArray weight, NDManager scope) {
        DataType type = weight.getDataType();
        if (!type.isFloating()) {
            throw new KilnException(technique + ": tensor '" + name + "' has data type " + type
                    + "; only floating-point weights can be compressed");
        }
        if (weight.size() == 0) {
            throw new KilnException(technique + ": tensor '" + name + "' is empty (shape " + weight.getShape() + ")");
        }
        if (weight.size() > Integer.MAX_VALUE) {
            throw new KilnException(technique + ": tensor '" + name + "' has " + weight.size()
                    + " elements; at most " + Integer.MAX_VALUE + " are supported per tensor");
        }
        NDArray w = weight.toType(DataType.FLOAT32, true);
        w.attach(scope);
        // max |w| is NaN when any element is NaN (torch propagates NaN through max), so one reduction checks both.
        float largest = w.abs().max().getFloat();
        if (!Float.isFinite(largest)) {
            throw new KilnException(technique + ": tensor '" + name + "' contains NaN or infinite values");
        }
        return w;
    }

    /** The tensor seen as a matrix [out, rest]: conv kernels [out, in, kh, kw] become [out, in*kh*kw]. */
    static NDArray asMatrix(String technique, String name, NDArray w) {
        Shape shape = w.getShape();
        if (shape.dimension() < 2) {
            throw new KilnException(technique + ": tensor '" + name + "' has shape " + shape
                    + "; it needs at least 2 dimensions [out, in, ...]");
        }
        return w.reshape(shape.get(0), shape.size() / shape.get(0));
    }

    /**
     * A boolean mask of the same shape as {@code score} [rows, cols] that keeps exactly {@code k} entries per row:
     * the largest scores, ties at the threshold broken in favour of the lower column index.
     *
     * <p>Why not argSort or topK indices: torch's sort and topk do not promise any order among equal values, so
     * the kept set could change between runs or devices. Only the k-th largest <em>value</em> is taken from topK
     * (a value is the same whichever equal element produced it); everything strictly above it is kept, and among
     * the elements equal to it the first ones in index order fill the remaining places (a running count of ties).
     */
    static NDArray keepLargest(NDArray score, long k) {
        long cols = score.getShape().get(1);
        if (k <= 0) {
            return score.lt(Float.NEGATIVE_INFINITY);
        }
        if (k >= cols) {
            return score.gte(Float.NEGATIVE_INFINITY);
        }
        NDArray kth;
        if (k <= cols / 2) {
            kth = score.topK((int) k, 1, true, false).get(0).min(new int[] {1}, true);
        } else {
            // The k-th largest is the (cols-k+1)-th smallest; asking for the shorter list halves the work.
            kth = score.topK((int) (cols - k + 1), 1, false, false).get(0).max(new int[] {1}, true);
        }
        NDArray above = score.gt(kth);
        NDArray tie = score.eq(kth);
        NDArray stillNeeded = above.toType(DataType.INT64, false).sum(new int[] {1}, true).neg().add(k);
        NDArray tieRank = tie.toType(DataType.INT64, false).cumSum(1);
        return above.logicalOr(tie.logicalAnd(tieRank.lte(stillNeeded)));
    }

    /** The number of entries a fraction keeps, rounded half up: round(fraction * total). */
    static long fractionOf(double fraction, long total) {
        return Math.round(fraction * total);
    }

    /** A shape written as a comma list for metadata: {@code 64,32,3,3}. */
    static String shapeText(Shape shape) {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < shape.dimension(); i++) {
            text.append(i == 0 ? "" : ",").append(shape.get(i));
        }
        return text.toString();
    }

    /** Moves the outputs to the caller's manager (the scope is about to close) and freezes the maps. */
    static CompressedTensor result(NDManager owner, Map<String, NDArray> stored, NDArray reconstruction,
            Map<String, String> metadata) {
        for (NDArray array : stored.values()) {
            array.attach(owner);
        }
        reconstruction.attach(owner);
        return new CompressedTensor(Collections.unmodifiableMap(new LinkedHashMap<>(stored)), reconstruction,
                Collections.unmodifiableMap(new LinkedHashMap<>(metadata)));
    }
}
