package dev.kiln.core.train;

import ai.djl.nn.Parameter;
import java.util.Map;

/**
 * Called by {@link TrainingRun} after every optimiser step, with gradients already cleared: the place to keep a
 * constraint on the parameters, such as re-applying a pruning mask so pruned weights stay exactly zero.
 */
@FunctionalInterface
public interface StepHook {

    /**
     * @param parameters the model's parameters by stable name; edit their arrays in place
     * @param step the global step just taken (0-based)
     */
    void afterStep(Map<String, Parameter> parameters, long step);
}
