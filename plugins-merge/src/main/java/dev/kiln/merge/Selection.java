package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.KilnException;
import java.util.List;

/** Magnitude selections and sign election shared by the task-vector methods; all device-side. */
final class Selection {
    private Selection() {
    }

    /** {@code round(fraction * numel)}, clamped to {@code [0, numel]}. */
    static long count(double fraction, long numel) {
        return Math.max(0, Math.min(numel, Math.round(fraction * numel)));
    }

    /**
     * A boolean mask (same shape as {@code magnitude}) of exactly {@code k} elements with the largest values.
     *
     * <p>Equal values are ranked by flat index, lowest first, so the choice is deterministic and two calls with
     * {@code k1 < k2} give nested sets (which breadcrumbs relies on). torch's sort/topk promise no order among
     * equal keys, so instead of using their indices this finds the k-th largest value and then takes all larger
     * elements plus the first few equal ones, counted with a cumulative sum.
     */
    static NDArray largest(NDArray magnitude, long k, String tensorName) {
        long numel = magnitude.size();
        if (k >= numel) {
            return magnitude.gte(Float.NEGATIVE_INFINITY).logicalOr(magnitude.isNaN());
        }
        if (k <= 0) {
            return magnitude.lt(Float.NEGATIVE_INFINITY);
        }
        if (k > Integer.MAX_VALUE) {
            throw new KilnException("tensor '" + tensorName + "' is too large for a top-k selection of " + k
                    + " elements (at most " + Integer.MAX_VALUE + ")");
        }
        NDArray flat = magnitude.flatten();
        NDList top = flat.topK((int) k, 0, true, false);
        NDArray kth = top.get(0).min();
        top.close();
        NDArray above = flat.gt(kth);
        long aboveCount = above.toType(DataType.INT64, false).sum().getLong();
        NDArray equal = flat.eq(kth);
        NDArray rankAmongEqual = equal.toType(DataType.INT64, false).cumSum(0);
        NDArray keep = above.logicalOr(equal.logicalAnd(rankAmongEqual.lte(k - aboveCount)));
        return keep.reshape(magnitude.getShape());
    }

    /**
     * The elected sign per element, +1 or -1 (0 counts as +, as in mergekit): of the summed values for {@code sum}, of
     * the summed signs for {@code count}. {@code sign(sign(total) + 0.5)} is +1 for a positive or zero total and -1
     * for a negative one, in three float kernels instead of a comparison and a boolean-to-float conversion.
     */
    static NDArray electedSign(List<NDArray> contributions, boolean count) {
        NDArray total = count ? contributions.get(0).sign() : contributions.get(0);
        for (int i = 1; i < contributions.size(); i++) {
            NDArray term = count ? contributions.get(i).sign() : contributions.get(i);
            // The first sum of values is a new array; after that (and for sign counts) the total is ours to update.
            total = count || i > 1 ? total.addi(term) : total.add(term);
        }
        // A total that is a new array (a sum or sign count) is turned into the signs in place.
        boolean fresh = count || contributions.size() > 1;
        return (fresh ? total.signi() : total.sign()).addi(0.5f).signi();
    }
}
