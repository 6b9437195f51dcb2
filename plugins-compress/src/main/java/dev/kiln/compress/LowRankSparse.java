package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Low-rank plus sparse decomposition (the "C" step of MC-SMoE, Li et al. 2024, after LoSparse): W ~ U V + S, where
 * U V is the randomized truncated SVD of {@link LowRank} and S keeps the {@code residual-density} fraction of the
 * residual W - U V with the largest magnitude (exactly round(density * numel) entries, ties by lower flat index).
 *
 * <p>Stored: {@code ".u"} = U*S float32 [out, r], {@code ".v"} = V^T float32 [r, in], and the residual in
 * coordinate form so that its size reflects its sparsity: {@code ".residual"} float32 [nnz] values and
 * {@code ".residual_index"} int32 [nnz] row-major flat indices into the [out, in] matrix, ascending. The
 * reconstruction is U V + S in the original shape.
 */
public final class LowRankSparse implements Compressor {
    private final LowRank.Settings settings;
    private final double residualDensity;

    LowRankSparse(LowRank.Settings settings, double residualDensity) {
        this.settings = settings;
        this.residualDensity = residualDensity;
    }

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("low-rank-sparse", name, weight, scope);
            Shape shape = w.getShape();
            NDArray matrix = Weights.asMatrix("low-rank-sparse", name, w);
            LowRank.Approximation approx = LowRank.approximate("low-rank-sparse", name, matrix, settings);
            NDArray lowRank = approx.product();
            NDArray residual = matrix.sub(lowRank).reshape(1, matrix.size());
            long keep = Weights.fractionOf(residualDensity, matrix.size());
            NDArray mask = Weights.keepLargest(residual.abs(), keep).reshape(matrix.size());
            NDArray index = mask.nonzero().reshape(keep);
            NDArray values = residual.reshape(matrix.size()).get(index);
            NDArray sparse = residual.reshape(matrix.size()).mul(mask.toType(DataType.FLOAT32, false));
            NDArray reconstruction = lowRank.add(sparse.reshape(matrix.getShape())).reshape(shape);
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put(".u", approx.us());
            stored.put(".v", approx.vt());
            stored.put(".residual", values);
            stored.put(".residual_index", index.toType(DataType.INT32, false));
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "low-rank-sparse");
            metadata.put("rank", Integer.toString(approx.rank()));
            metadata.put("residual_density", Double.toString(residualDensity));
            metadata.put("residual_nnz", Long.toString(keep));
            metadata.put("original_shape", Weights.shapeText(shape));
            return Weights.result(owner, stored, reconstruction, metadata);
        }
    }
}
