package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import java.util.ArrayList;
import java.util.List;

/**
 * Model Stock (Jang et al. 2024): move from the base towards the models' average by
 * {@code t = N cos / (1 + (N - 1) cos)}, where {@code cos} is the mean pairwise cosine between the task vectors;
 * {@code theta = t * mean_i(theta_i) + (1 - t) * base}.
 *
 * <p>As in mergekit, the cosine is over the whole flattened tensor, or per row of the last axis when
 * {@code filterWise}; each norm product is floored at 1e-6 and each cosine clipped to [-1, 1]; weights are not used.
 */
final class ModelStockMerge implements MergeMethod {
    private final boolean filterWise;

    ModelStockMerge(boolean filterWise) {
        this.filterWise = filterWise;
    }

    @Override
    public boolean requiresBase() {
        return true;
    }

    @Override
    public NDArray merge(MergeInput input) {
        try (Scope scope = Scope.open("model-stock", input, true)) {
            int n = scope.size();
            if (n < 2) {
                throw new KilnException("merge method 'model-stock' needs at least two models besides the base "
                        + "(it measures the angle between their task vectors), but tensor '" + scope.name()
                        + "' has " + n);
            }
            Shape shape = scope.shape();
            long numel = shape.size();
            long rowLength = filterWise && shape.dimension() >= 1 ? shape.get(shape.dimension() - 1) : numel;
            Shape rows = new Shape(rowLength == 0 ? 0 : numel / rowLength, rowLength);
            NDArray base = scope.base().reshape(rows);
            List<NDArray> offsets = new ArrayList<>();
            List<NDArray> norms = new ArrayList<>();
            NDArray sum = null;
            for (int i = 0; i < n; i++) {
                NDArray model = scope.tensor(i).reshape(rows);
                sum = sum == null ? model : sum.add(model);
                NDArray offset = model.sub(base);
                offsets.add(offset);
                norms.add(offset.norm(new int[] {1}, true));
            }
            NDArray cosSum = null;
            int pairs = 0;
            for (int i = 0; i < n; i++) {
                for (int j = i + 1; j < n; j++) {
                    NDArray dot = offsets.get(i).mul(offsets.get(j)).sum(new int[] {1}, true);
                    NDArray cos = dot.div(norms.get(i).mul(norms.get(j)).maximum(1e-6f)).clip(-1f, 1f);
                    cosSum = cosSum == null ? cos : cosSum.add(cos);
                    pairs++;
                }
            }
            NDArray cos = cosSum.div((float) pairs);
            NDArray denominator = cos.mul((float) (n - 1)).add(1f);
            if (denominator.abs().lt(1e-6f).any().getBoolean()) {
                throw new KilnException("tensor '" + scope.name() + "': the task vectors of merge method "
                        + "'model-stock' have a mean cosine of -1/(N-1) = " + (-1.0 / (n - 1))
                        + ", where its interpolation ratio N cos / (1 + (N-1) cos) is undefined");
            }
            NDArray t = cos.mul((float) n).div(denominator);
            NDArray mean = sum.div((float) n);
            NDArray result = mean.mul(t).add(base.mul(t.neg().add(1f)));
            return scope.finish(result.reshape(shape));
        }
    }
}
