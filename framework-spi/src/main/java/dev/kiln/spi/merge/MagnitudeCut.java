package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * The {@code k} largest elements of a scope, as a threshold: every element above {@code threshold} is kept, and of the
 * elements equal to it only the first {@code equalQuota} in flat index order. This is how a selection found in one
 * pass over the scope is applied block by block, with the same tie rule as ranking the whole scope at once.
 *
 * @param k how many elements are selected (0 selects none, the scope's size selects all)
 * @param numel the scope's size
 * @param threshold the k-th largest value (unused when {@code k} is 0 or {@code numel})
 * @param equalQuota how many elements equal to {@code threshold} are selected, counted from the start of the scope
 * @since 1.2
 */
public record MagnitudeCut(long k, long numel, float threshold, long equalQuota) {

    /**
     * The mask of the selected elements of one block of the scope.
     *
     * @param values the block's values (float32, any shape)
     * @param equalBefore how many elements equal to {@code threshold} precede the block in the scope
     */
    public NDArray select(NDArray values, long equalBefore) {
        return select(values, equalBefore, -1);
    }

    /**
     * {@link #select(NDArray, long)} when the number of elements equal to {@code threshold} in the block is known
     * ({@code equalInBlock}, or -1 when not): a block without equal elements, or whose equal elements all fall within
     * the quota, needs no ranking among them, which saves two full-size temporaries (an int64 cumulative sum).
     */
    public NDArray select(NDArray values, long equalBefore, long equalInBlock) {
        if (k >= numel) {
            // Everything, NaN included, as the whole-scope ranking does.
            return values.gte(Float.NEGATIVE_INFINITY).logicalOr(values.isNaN());
        }
        if (k <= 0) {
            return values.lt(Float.NEGATIVE_INFINITY);
        }
        NDArray above = values.gt(threshold);
        long remaining = equalQuota - equalBefore;
        if (remaining <= 0 || equalInBlock == 0) {
            return above;
        }
        NDArray equal = values.eq(threshold);
        if (remaining >= values.size() || (equalInBlock > 0 && equalInBlock <= remaining)) {
            return above.logicalOr(equal);
        }
        // Rank among the equal elements of this block, in flat order; shaped back afterwards.
        NDArray rank = equal.flatten().toType(DataType.INT64, false).cumSum(0).reshape(values.getShape());
        return above.logicalOr(equal.logicalAnd(rank.lte(remaining)));
    }

    /**
     * {@link #select(NDArray, long, long)} as float32 factors, 1 for a selected element and 0 for the others, to
     * multiply a task vector with. When the block's elements equal to the threshold are all selected or all left out
     * (the usual case: with continuous values there are none), the factors come from float kernels alone,
     * {@code sign(max(v - t, 0))} for "above t" and {@code sign(min(v - t, 0)) + 1} for "at least t"; that is cheaper
     * on CPU than a comparison into a boolean array and its conversion to float. {@code v - t} is 0 only where
     * {@code v == t} (gradual underflow), so the factors are exact. Values must be finite (trimming refuses NaN
     * anyway).
     *
     * @since 1.2
     */
    public NDArray selectAsFloat(NDArray values, long equalBefore, long equalInBlock) {
        long remaining = equalQuota - equalBefore;
        boolean strictlyAbove = remaining <= 0 || equalInBlock == 0;
        boolean atLeast = remaining >= values.size() || (equalInBlock > 0 && equalInBlock <= remaining);
        if (k >= numel || k <= 0 || !(strictlyAbove || atLeast)) {
            return select(values, equalBefore, equalInBlock).toType(DataType.FLOAT32, false);
        }
        NDArray step = values.sub(threshold);
        NDArray factors = strictlyAbove ? step.maximum(0f).signi() : step.minimum(0f).signi().addi(1f);
        step.close();
        return factors;
    }
}
