package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Structured pruning of whole output rows (channels): removes the {@code sparsity} fraction of rows with the
 * smallest L2 norm, keeping exactly {@code round((1 - sparsity) * out)} rows (ties: lower row index kept first).
 *
 * <p>Stored, under these suffixes:
 * <ul>
 *   <li>{@code ".rows"}: the kept rows as a smaller dense float32 tensor [kept, in, ...], in ascending row order;</li>
 *   <li>{@code ".row_index"}: the original indices of those rows, int64 [kept], ascending.</li>
 * </ul>
 * The reconstruction is the original shape with the removed rows zero. A loader that shrinks the layer must also
 * drop the matching entries of the bias and the matching inputs of the next layer; the indices say which.
 */
public final class StructuredPruning implements Compressor {
    private final double sparsity;

    /** @param sparsity fraction of output rows removed, in [0, 1) */
    public StructuredPruning(double sparsity) {
        this.sparsity = sparsity;
    }

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("structured", name, weight, scope);
            Shape shape = w.getShape();
            NDArray matrix = Weights.asMatrix("structured", name, w);
            long rows = shape.get(0);
            long keep = Weights.fractionOf(1 - sparsity, rows);
            if (keep == 0) {
                throw new KilnException("structured: sparsity " + sparsity + " would remove all " + rows
                        + " output rows of tensor '" + name + "' (shape " + shape + "); lower 'sparsity'");
            }
            NDArray norms = matrix.norm(new int[] {1}).reshape(1, rows);
            NDArray rowMask = Weights.keepLargest(norms, keep).reshape(rows);
            NDArray index = rowMask.nonzero().reshape(keep);
            NDArray kept = w.get(index);
            Shape broadcast = new Shape(rows).addAll(new Shape(repeatOnes(shape.dimension() - 1)));
            NDArray reconstruction = w.mul(rowMask.toType(w.getDataType(), false).reshape(broadcast));
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put(".rows", kept);
            stored.put(".row_index", index);
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "structured");
            metadata.put("sparsity", Double.toString(sparsity));
            metadata.put("kept_rows", Long.toString(keep));
            metadata.put("original_shape", Weights.shapeText(shape));
            return Weights.result(owner, stored, reconstruction, metadata);
        }
    }

    private static long[] repeatOnes(int count) {
        long[] ones = new long[count];
        java.util.Arrays.fill(ones, 1);
        return ones;
    }
}
