package dev.kiln.spi.merge;

import java.util.Map;

/**
 * Optional capability of a {@link MergeMethod} that keeps, per model, the {@code k} largest magnitudes of its task
 * vector {@code |theta_i - base|}, ranked over one tensor or over every float tensor of the model.
 *
 * <p>Ranking needs the whole scope, which does not fit in memory for large tensors (or at all for a whole model).
 * A method that implements this interface lets the core find each selection exactly in a first streaming pass over
 * the scope; the core then hands the method row blocks with {@link MergeInput#ranks()} set, and the method asks it
 * for its masks instead of ranking the block itself. Without ranks (a direct call, or a tensor small enough to merge
 * whole in tensor scope) the method ranks the tensor it was given, which must select exactly the same elements:
 * the {@code k} largest, equal magnitudes taken in flat index order (lowest first), the model's float tensors in
 * checkpoint order for {@link TrimScope#MODEL}.
 *
 * @since 1.2
 */
public interface MagnitudeTrim {

    /** Over what the magnitudes are ranked. */
    enum TrimScope {
        /** Each tensor on its own (mergekit). */
        TENSOR,
        /** All float tensors of a model together: one threshold per model (the TIES paper's global trim). */
        MODEL
    }

    /** Where the ranking happens. */
    TrimScope trimScope();

    /**
     * The counts {@code k} (each in {@code [0, numel]}) of largest task-vector magnitudes that the merge will ask
     * {@link MagnitudeRanks#largest} for, for model {@code model} over a scope of {@code numel} elements.
     *
     * @param overrides the model's per-model parameters ({@link ModelTensor#overrides()})
     * @param where the scope for error messages: a tensor name, or a description of the whole model
     * @throws dev.kiln.spi.KilnException for a per-model parameter out of range, naming {@code where}
     */
    long[] keepCounts(int model, Map<String, Double> overrides, long numel, String where);
}
