package dev.kiln.core.merge;

import dev.kiln.core.safetensors.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * What to merge and where: the resolved inputs and output settings of one merge, independent of where they came from
 * (the pom, a mergekit YAML file, a test).
 *
 * @param methodId the merge method's id (recorded in the output's metadata and the report)
 * @param params the method's parameters as given (recorded, already bound by the registry)
 * @param base the base checkpoint, or null
 * @param models the models to merge, at least one
 * @param output a {@code .safetensors} file; when sharded, the shards and index go next to it, named after its stem
 * @param threads tensors merged at once (at least 1)
 * @param seed the merge's seed; each tensor's random source is derived from it and the tensor's name
 * @param outputDtype the float dtype written, or null to keep each tensor's input dtype
 * @param maxShardBytes the most tensor bytes per output shard, or 0 for one file
 * @param allowNonFinite whether NaN or infinite input weights are accepted
 */
public record MergeSpec(String methodId, Map<String, String> params, Path base, List<ModelInput> models, Path output,
        int threads, long seed, DType outputDtype, long maxShardBytes, boolean allowNonFinite) {

    /**
     * One input model.
     *
     * @param path a safetensors file, a folder with {@code model.safetensors} or a sharded index, or an index file
     * @param weight the model's weight in the merge
     * @param overrides per-model method parameters (e.g. {@code density})
     * @param statistic a safetensors file with a per-element statistic (e.g. the diagonal Fisher) under the same
     *     tensor names, streamed beside the weights into {@link dev.kiln.spi.merge.ModelTensor#statistic()}; or null
     */
    public record ModelInput(Path path, double weight, Map<String, Double> overrides, Path statistic) {
        public ModelInput {
            overrides = overrides == null ? Map.of() : Map.copyOf(overrides);
        }

        /** A model without a statistic. */
        public ModelInput(Path path, double weight, Map<String, Double> overrides) {
            this(path, weight, overrides, null);
        }

        /** This model with {@code file} as its statistic. */
        public ModelInput withStatistic(Path file) {
            return new ModelInput(path, weight, overrides, file);
        }

        /** A model with weight 1 and no overrides. */
        public static ModelInput of(Path path) {
            return new ModelInput(path, 1.0, Map.of());
        }
    }

    public MergeSpec {
        params = params == null ? Map.of() : Map.copyOf(params);
        models = List.copyOf(models);
        threads = Math.max(1, threads);
    }
}
