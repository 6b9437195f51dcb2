package dev.kiln.spi.merge;

import ai.djl.ndarray.NDArray;
import java.util.Map;

/**
 * One input model's tensor of the current name, with its per-model settings.
 *
 * @param tensor the model's weights for this tensor name (float32)
 * @param weight the model's weight in the merge (mergekit's {@code weight}); 1 unless configured
 * @param overrides per-model parameter values (mergekit's {@code models[].parameters}, e.g. {@code density}),
 *     which take precedence over the method's parameter of the same name
 * @param statistic a per-element statistic of the same shape (e.g. the diagonal Fisher), or null
 */
public record ModelTensor(NDArray tensor, double weight, Map<String, Double> overrides, NDArray statistic) {

    /** A model tensor with weight 1 and no overrides or statistic. */
    public static ModelTensor of(NDArray tensor) {
        return new ModelTensor(tensor, 1.0, Map.of(), null);
    }

    /** The per-model value of {@code name}, or {@code fallback} (usually the method's parameter). */
    public double parameter(String name, double fallback) {
        Double value = overrides.get(name);
        return value == null ? fallback : value;
    }
}
