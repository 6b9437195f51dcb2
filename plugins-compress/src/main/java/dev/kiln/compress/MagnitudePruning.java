package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Unstructured magnitude pruning of one tensor: keeps exactly {@code round((1 - sparsity) * numel)} entries with the
 * largest |w| and zeroes the rest; among equal magnitudes the lower flat (row-major) index wins, so the result is
 * the same on every run and device.
 *
 * <p>Stored: the pruned dense tensor (float32) under the suffix {@code ""}; it is also the reconstruction (the same
 * array). Metadata: {@code format=magnitude}, {@code sparsity}, {@code kept}, {@code numel}.
 */
public final class MagnitudePruning implements Compressor {
    private final double sparsity;

    /** @param sparsity fraction of entries set to zero, in [0, 1] */
    public MagnitudePruning(double sparsity) {
        this.sparsity = sparsity;
    }

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("magnitude", name, weight, scope);
            long numel = w.size();
            long keep = Weights.fractionOf(1 - sparsity, numel);
            NDArray flat = w.reshape(1, numel);
            NDArray mask = Weights.keepLargest(flat.abs(), keep).reshape(w.getShape());
            NDArray pruned = w.mul(mask.toType(w.getDataType(), false));
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put("", pruned);
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "magnitude");
            metadata.put("sparsity", Double.toString(sparsity));
            metadata.put("kept", Long.toString(keep));
            metadata.put("numel", Long.toString(numel));
            return Weights.result(owner, stored, pruned, metadata);
        }
    }
}
