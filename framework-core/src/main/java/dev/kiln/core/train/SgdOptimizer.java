package dev.kiln.core.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.nn.Parameter;
import dev.kiln.spi.KilnException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * SGD with optional (Nesterov) momentum and L2 weight decay, with PyTorch's update rule:
 * {@code g = grad + wd * p; buf = momentum * buf + g; p -= lr * (nesterov ? g + momentum * buf : buf)}.
 */
public final class SgdOptimizer implements ParameterOptimizer {
    private static final String PREFIX = "optimizer.momentum.";
    private final double momentum;
    private final boolean nesterov;
    private final double weightDecay;
    private final Map<String, NDArray> buffers = new LinkedHashMap<>();

    public SgdOptimizer(double momentum, boolean nesterov, double weightDecay) {
        this.momentum = momentum;
        this.nesterov = nesterov;
        this.weightDecay = weightDecay;
    }

    @Override
    public void step(Map<String, Parameter> parameters, double learningRate, long step) {
        for (Map.Entry<String, Parameter> e : parameters.entrySet()) {
            NDArray p = e.getValue().getArray();
            if (!e.getValue().requiresGradient() || !p.hasGradient()) {
                continue;
            }
            try (NDManager scope = p.getManager().newSubManager()) {
                NDArray g = ParameterOptimizer.scoped(p.getGradient(), scope);
                NDArray d = weightDecay == 0 ? g : g.add(ParameterOptimizer.scoped(p.mul(weightDecay), scope));
                if (momentum != 0) {
                    NDArray buf = buffers.get(e.getKey());
                    if (buf == null) {
                        // PyTorch starts the buffer at the first gradient rather than at zero.
                        buf = d.duplicate();
                        buf.attach(p.getManager());
                        buffers.put(e.getKey(), buf);
                    } else {
                        buf.muli(momentum).addi(d);
                    }
                    d = nesterov ? d.add(ParameterOptimizer.scoped(buf.mul(momentum), scope)) : buf;
                }
                p.subi(ParameterOptimizer.scoped(d.mul(learningRate), scope));
            }
        }
    }

    @Override
    public Map<String, NDArray> state() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        buffers.forEach((name, buf) -> out.put(PREFIX + name, buf));
        return out;
    }

    @Override
    public void loadState(Map<String, NDArray> state, NDManager manager) {
        buffers.clear();
        state.forEach((name, array) -> {
            if (!name.startsWith(PREFIX)) {
                throw new KilnException("optimizer state '" + name + "' is not SGD momentum; was the checkpoint"
                        + " written with another optimiser?");
            }
            NDArray copy = array.duplicate();
            copy.attach(manager);
            buffers.put(name.substring(PREFIX.length()), copy);
        });
    }
}
