package dev.kiln.spi.compress;

import ai.djl.ndarray.NDArray;
import java.util.Map;

/**
 * The stored form of one compressed tensor and its reconstruction.
 *
 * @param stored the tensors written to the checkpoint instead of the original, keyed by a suffix appended to the
 *     original name (for example {@code ""} for a pruned weight, {@code ".q"} and {@code ".scale"} for int8)
 * @param reconstruction the dense tensor the stored form stands for, same shape as the original, float32
 * @param metadata what a loader needs to rebuild the layer (format name, rank, N:M pattern...)
 */
public record CompressedTensor(Map<String, NDArray> stored, NDArray reconstruction, Map<String, String> metadata) {

    /** Bytes of the stored tensors (dense storage of each stored array). */
    public long storedBytes() {
        long bytes = 0;
        for (NDArray array : stored.values()) {
            bytes += array.size() * array.getDataType().getNumOfBytes();
        }
        return bytes;
    }
}
