package dev.kiln.core.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.nn.Parameter;
import dev.kiln.spi.KilnException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * AdamW (Loshchilov and Hutter 2019): Adam with weight decay applied to the weights directly, decoupled from the
 * gradient: {@code p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)}.
 */
public final class AdamWOptimizer implements ParameterOptimizer {
    private static final String M = "optimizer.exp_avg.";
    private static final String V = "optimizer.exp_avg_sq.";
    private final double beta1;
    private final double beta2;
    private final double epsilon;
    private final double weightDecay;
    private final Map<String, NDArray> first = new LinkedHashMap<>();
    private final Map<String, NDArray> second = new LinkedHashMap<>();

    public AdamWOptimizer(double beta1, double beta2, double epsilon, double weightDecay) {
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.epsilon = epsilon;
        this.weightDecay = weightDecay;
    }

    @Override
    public void step(Map<String, Parameter> parameters, double learningRate, long step) {
        long t = step + 1;
        double correction1 = 1 - Math.pow(beta1, t);
        double correction2 = 1 - Math.pow(beta2, t);
        for (Map.Entry<String, Parameter> e : parameters.entrySet()) {
            NDArray p = e.getValue().getArray();
            if (!e.getValue().requiresGradient() || !p.hasGradient()) {
                continue;
            }
            try (NDManager scope = p.getManager().newSubManager()) {
                NDArray g = ParameterOptimizer.scoped(p.getGradient(), scope);
                NDArray m = first.computeIfAbsent(e.getKey(), k -> p.zerosLike());
                NDArray v = second.computeIfAbsent(e.getKey(), k -> p.zerosLike());
                m.muli(beta1).addi(g.mul(1 - beta1));
                v.muli(beta2).addi(g.square().muli(1 - beta2));
                if (weightDecay != 0) {
                    p.muli(1 - learningRate * weightDecay);
                }
                NDArray denominator = ParameterOptimizer.scoped(v.div(correction2), scope).sqrt().addi(epsilon);
                NDArray update = ParameterOptimizer.scoped(m.mul(learningRate / correction1), scope)
                        .divi(denominator);
                p.subi(update);
            }
        }
    }

    @Override
    public Map<String, NDArray> state() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        first.forEach((name, array) -> out.put(M + name, array));
        second.forEach((name, array) -> out.put(V + name, array));
        return out;
    }

    @Override
    public void loadState(Map<String, NDArray> state, NDManager manager) {
        first.clear();
        second.clear();
        state.forEach((name, array) -> {
            NDArray copy = array.duplicate();
            copy.attach(manager);
            if (name.startsWith(M)) {
                first.put(name.substring(M.length()), copy);
            } else if (name.startsWith(V)) {
                second.put(name.substring(V.length()), copy);
            } else {
                throw new KilnException("optimizer state '" + name + "' is not AdamW state; was the checkpoint"
                        + " written with another optimiser?");
            }
        });
    }
}
