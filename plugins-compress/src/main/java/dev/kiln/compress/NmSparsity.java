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
 * N:M semi-structured sparsity along the input dimension: in every group of M consecutive input weights of an
 * output row, the N with the largest |w| are kept (ties: lower index first) and the others zeroed.
 *
 * <p>A Linear weight [out, in] is grouped along {@code in}. A conv kernel [out, in, kh, kw] is flattened per output
 * channel to [out, in*kh*kw] in its row-major order and grouped along that flattened axis, so a group of M runs
 * through the kernel window of one input channel before moving on to the next; the flattened length must be a
 * multiple of M. (Kernels that accelerate 2:4 convolutions may want groups across input channels instead; such a
 * layout would permute the kernel before compressing.)
 *
 * <p>Stored: the pruned dense tensor (float32) under {@code ""}, also the reconstruction. Metadata:
 * {@code format=nm}, {@code n}, {@code m}, {@code group_axis=input}.
 */
public final class NmSparsity implements Compressor {
    private final int n;
    private final int m;

    /**
     * @param n weights kept per group
     * @param m group length
     */
    public NmSparsity(int n, int m) {
        if (n > m) {
            throw new KilnException("compressor 'nm': parameter 'n' (" + n + ") must not exceed parameter 'm' ("
                    + m + "): a group of " + m + " weights cannot keep " + n);
        }
        this.n = n;
        this.m = m;
    }

    /**
     * Matrices and conv kernels whose input length per output row (in, or in x kh x kw) divides into groups of M;
     * others (a first conv layer with 1 x 5 x 5 = 25 inputs per filter) stay dense, as N:M kernels cannot run them.
     * Calling {@link #compress} on such a tensor directly still fails with a message naming it.
     */
    @Override
    public boolean appliesTo(String name, Shape shape) {
        if (shape.dimension() < 2) {
            return false;
        }
        return (shape.size() / shape.get(0)) % m == 0;
    }

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("nm", name, weight, scope);
            Shape shape = w.getShape();
            NDArray matrix = Weights.asMatrix("nm", name, w);
            long inputs = matrix.getShape().get(1);
            if (inputs % m != 0) {
                throw new KilnException("nm: tensor '" + name + "' of shape " + shape + " has " + inputs
                        + " input weights per output row, which is not divisible by m=" + m);
            }
            NDArray groups = matrix.reshape(matrix.size() / m, m);
            NDArray mask = Weights.keepLargest(groups.abs(), n).reshape(shape);
            NDArray pruned = w.mul(mask.toType(w.getDataType(), false));
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put("", pruned);
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "nm");
            metadata.put("n", Integer.toString(n));
            metadata.put("m", Integer.toString(m));
            metadata.put("group_axis", "input");
            return Weights.result(owner, stored, pruned, metadata);
        }
    }
}
