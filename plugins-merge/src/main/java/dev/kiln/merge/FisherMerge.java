package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;

/**
 * Fisher-weighted averaging (Matena and Raffel 2022), per element:
 * {@code theta = sum_i w_i F_i theta_i / sum_i w_i F_i} with {@code F_i = max(statistic_i, epsilon)}.
 *
 * <p>The floor keeps elements that no model's Fisher covers from dividing by zero: there the merge falls back to
 * the weighted average. Weights must be non-negative with a positive sum, so the denominator stays positive.
 */
final class FisherMerge implements MergeMethod {
    private final double epsilon;

    FisherMerge(double epsilon) {
        this.epsilon = epsilon;
    }

    @Override
    public NDArray merge(MergeInput input) {
        if (input.models() != null) {
            double total = 0;
            for (int i = 0; i < input.models().size(); i++) {
                if (input.models().get(i).statistic() == null) {
                    throw new KilnException("merge method 'fisher' needs a per-element statistic (the diagonal "
                            + "Fisher) for every model, but model " + i + " has none for tensor '"
                            + input.tensorName() + "'");
                }
                double w = input.models().get(i).weight();
                if (w < 0) {
                    throw new KilnException("tensor '" + input.tensorName() + "': model " + i + " has weight " + w
                            + ", but merge method 'fisher' needs non-negative weights");
                }
                total += w;
            }
            if (!input.models().isEmpty() && !(total > 0)) {
                throw new KilnException("tensor '" + input.tensorName() + "': the model weights sum to " + total
                        + ", but merge method 'fisher' needs a positive sum");
            }
        }
        try (Scope scope = Scope.open("fisher", input, false)) {
            NDArray numerator = null;
            NDArray denominator = null;
            for (int i = 0; i < scope.size(); i++) {
                NDArray importance = scope.model(i).statistic().maximum((float) epsilon)
                        .mul((float) scope.model(i).weight());
                NDArray term = importance.mul(scope.tensor(i));
                numerator = numerator == null ? term : numerator.add(term);
                denominator = denominator == null ? importance : denominator.add(importance);
            }
            return scope.finish(numerator.div(denominator));
        }
    }
}
