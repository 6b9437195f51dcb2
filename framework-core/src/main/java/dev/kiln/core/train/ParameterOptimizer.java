package dev.kiln.core.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.nn.Parameter;
import java.util.Map;

/**
 * Updates parameters in place from their gradients. Kiln's own, rather than DJL's optimisers, because its state
 * (momentum, moment estimates) must go into checkpoints so that a resumed run continues exactly.
 */
public interface ParameterOptimizer {

    /**
     * One update of every trainable parameter that has a gradient.
     *
     * @param parameters by stable name
     * @param learningRate this step's rate
     * @param step the global step, from 0 (bias corrections use it)
     */
    void step(Map<String, Parameter> parameters, double learningRate, long step);

    /** The state to checkpoint, named {@code optimizer.<kind>.<parameter>}. */
    Map<String, NDArray> state();

    /** Restores state written by {@link #state()}, copying into {@code manager}. */
    void loadState(Map<String, NDArray> state, NDManager manager);

    /** Attaches a temporary to the step's scoped manager so it is freed with it. */
    static NDArray scoped(NDArray array, NDManager scope) {
        array.attach(scope);
        return array;
    }
}
