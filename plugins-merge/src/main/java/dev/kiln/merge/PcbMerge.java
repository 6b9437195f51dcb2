package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;

/**
 * PCB-Merging (Du et al. 2024), per tensor, following the authors' reference code.
 *
 * <p>With the task vectors {@code T} as rows of an {@code n x d} matrix:
 * <ol>
 * <li>clip each row's magnitudes between its order statistics at {@code clipRatio} and {@code 1 - clipRatio}
 *     ({@code Tc = sign(T) * clipped |T|});</li>
 * <li>intra-balancing {@code exp(temperature * minmax(|Tc|)^2)}, the temperature being {@code n} unless set (the
 *     paper's softmax differs only by a positive per-row factor, which the later min-max normalization cancels);</li>
 * <li>inter-balancing {@code tanh(T * sum_j T_j)};</li>
 * <li>the product is clamped from below at its row's {@code 1 - ratio} order statistic and min-max normalized, so
 *     all but the top {@code ratio} of each row get scale 0;</li>
 * <li>{@code theta = base + lambda * sum_i w_i scale_i Tc_i / max(sum_i scale_i, 1e-12)}.</li>
 * </ol>
 * Order statistics use the reference code's indices {@code floor(d * lo)} and {@code floor(d * (1 - hi) - 1)}. A
 * constant row, which the reference code turns into NaN (0/0), gets min-max value 0 here.
 */
final class PcbMerge implements MergeMethod {
    private final double ratio;
    private final double clipRatio;
    private final double temperature;
    private final double lambda;

    PcbMerge(double ratio, double clipRatio, double temperature, double lambda) {
        this.ratio = ratio;
        this.clipRatio = clipRatio;
        this.temperature = temperature;
        this.lambda = lambda;
    }

    @Override
    public boolean requiresBase() {
        return true;
    }

    @Override
    public NDArray merge(MergeInput input) {
        try (Scope scope = Scope.open("pcb", input, true)) {
            int n = scope.size();
            NDArray base = scope.base();
            NDList rows = new NDList();
            for (int i = 0; i < n; i++) {
                rows.add(scope.tensor(i).sub(base).flatten());
            }
            NDArray tasks = NDArrays.stack(rows);
            NDArray clippedAbs = clampRows(tasks.abs(), clipRatio, clipRatio);
            NDArray clipped = tasks.sign().mul(clippedAbs);
            double tau = temperature > 0 ? temperature : n;
            NDArray intra = minMaxRows(clippedAbs).square().mul((float) tau).exp();
            NDArray inter = tasks.mul(tasks.sum(new int[] {0}, true)).tanh();
            NDArray scale = minMaxRows(clampRows(intra.mul(inter), 1 - ratio, 0));
            float[] weights = new float[n];
            for (int i = 0; i < n; i++) {
                weights[i] = (float) scope.model(i).weight();
            }
            NDArray weighted = scale.mul(scope.manager().create(weights).reshape(n, 1));
            NDArray merged = clipped.mul(weighted).sum(new int[] {0})
                    .div(scale.sum(new int[] {0}).maximum(1e-12f));
            return scope.finish(base.add(merged.reshape(scope.shape()).mul((float) lambda)));
        }
    }

    /** Clamps each row between its order statistics at indices {@code floor(d*lo)} and {@code floor(d*(1-hi)-1)}. */
    static NDArray clampRows(NDArray x, double lo, double hi) {
        long d = x.getShape().get(1);
        long low = Math.max(0, Math.min(d - 1, (long) (d * lo)));
        long high = Math.max(0, Math.min(d - 1, (long) (d * (1 - hi) - 1)));
        NDArray sorted = x.sort(1);
        NDArray min = sorted.get(new NDIndex(":, {}:{}", low, low + 1));
        NDArray max = sorted.get(new NDIndex(":, {}:{}", high, high + 1));
        // torch.clamp(x, min, max) applies the lower bound first, then the upper one.
        return x.maximum(min).minimum(max);
    }

    /** Per-row {@code (x - min) / (max - min)}, with 0 for rows where max == min. */
    static NDArray minMaxRows(NDArray x) {
        NDArray min = x.min(new int[] {1}, true);
        NDArray range = x.max(new int[] {1}, true).sub(min);
        NDArray flat = range.eq(0f);
        NDArray safeRange = range.add(flat.toType(DataType.FLOAT32, false));
        return x.sub(min).div(safeRange).mul(flat.logicalNot().toType(DataType.FLOAT32, false));
    }
}
