package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;

/** Weighted average of the models: {@code sum_i w_i theta_i / (normalize ? sum_i w_i : 1)}; the base is ignored. */
final class LinearMerge implements MergeMethod {
    private final boolean normalize;

    LinearMerge(boolean normalize) {
        this.normalize = normalize;
    }

    /**
     * A weighted sum of the same element of each model: the core may merge large tensors in row blocks.
     */
    @Override
    public boolean elementwise() {
        return true;
    }

    @Override
    public NDArray merge(MergeInput input) {
        try (Scope scope = Scope.open("linear", input, false)) {
            // One new array, updated in place, and no product for a weight of exactly 1 (the default): the merge of
            // large checkpoints is bound by such full passes over each block. Same order of operations, same bits.
            double total = 0;
            NDArray sum = null;
            for (int i = 0; i < scope.size(); i++) {
                double w = scope.model(i).weight();
                total += w;
                NDArray tensor = scope.tensor(i);
                boolean unit = (float) w == 1f;
                if (sum == null) {
                    sum = unit ? tensor.duplicate() : tensor.mul((float) w);
                } else if (unit) {
                    sum.addi(tensor);
                } else {
                    NDArray term = tensor.mul((float) w);
                    sum.addi(term);
                    term.close();
                }
            }
            if (normalize) {
                if (Math.abs(total) < 1e-12) {
                    throw new KilnException("tensor '" + scope.name() + "': the model weights sum to " + total
                            + ", so merge method 'linear' cannot normalize by them; change the weights or set "
                            + "normalize=false");
                }
                sum.divi((float) total);
            }
            return scope.finish(sum);
        }
    }
}
