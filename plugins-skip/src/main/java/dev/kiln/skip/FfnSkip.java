package dev.kiln.skip;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.random.RandomGenerator;

/**
 * FFN-SkipLLM: attention always runs; in a decode pass, once an FFN barely changed the residual stream, the
 * following FFNs are skipped.
 *
 * <p>Exact rule. Every layer runs and every attention runs. In a decode pass the FFN of layer {@code l} is skipped
 * when all of these hold: (1) at least {@code warmup-tokens} decode passes have begun since the last prefill pass
 * before this one; (2) {@code protect-first <= l < L - protect-last}; (3) the most recent FFN observed in this pass
 * (the last layer before {@code l} whose FFN ran) had a cosine similarity between its input and output hidden states,
 * averaged over batch and tokens, above {@code threshold}. Because a skipped FFN gives no new observation, skipping
 * continues until a protected layer runs its FFN again. Prefill, forward and training passes run every FFN.
 *
 * <p>The policy counts decode passes, so one instance serves one generation at a time (not thread-safe). The
 * similarity is a batch mean, so a batch can decide differently from its rows generated one by one.
 */
final class FfnSkip implements SkipPolicy {
    static final String ID = "ffn-skip";
    private final double threshold;
    private final int warmupTokens;
    private final int protectFirst;
    private final int protectLast;
    private int decodePasses;

    FfnSkip(double threshold, int warmupTokens, int protectFirst, int protectLast) {
        this.threshold = threshold;
        this.warmupTokens = warmupTokens;
        this.protectFirst = protectFirst;
        this.protectLast = protectLast;
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.ATTENTION_ALWAYS_RUNS;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        int layers = Layers.count(layout, ID);
        boolean active = false;
        if (phase == Phase.PREFILL) {
            decodePasses = 0;
        } else if (phase == Phase.DECODE) {
            active = decodePasses >= warmupTokens;
            decodePasses++;
        }
        return new Session(layers, active);
    }

    /** Mean over batch and tokens of the cosine similarity between {@code input} and {@code output} along the last axis. */
    static double meanCosine(NDArray input, NDArray output) {
        if (!input.getShape().equals(output.getShape())) {
            throw new KilnException("skip policy 'ffn-skip': FFN input shape " + input.getShape()
                    + " differs from output shape " + output.getShape());
        }
        try (NDManager sub = input.getManager().newSubManager()) {
            // copies attached to sub make every derived temporary live in sub (results follow the first operand)
            NDArray a = input.toType(DataType.FLOAT32, true);
            a.attach(sub);
            NDArray b = output.toType(DataType.FLOAT32, true);
            b.attach(sub);
            NDArray dot = a.mul(b).sum(new int[] {-1});
            NDArray norms = a.square().sum(new int[] {-1}).sqrt().mul(b.square().sum(new int[] {-1}).sqrt());
            // a zero vector has no direction; the 1e-12 keeps its similarity at 0 instead of NaN
            return dot.div(norms.add(1e-12f)).mean().getFloat();
        }
    }

    private final class Session implements SkipSession {
        private final int layers;
        private final boolean active;
        private double lastSimilarity = Double.NEGATIVE_INFINITY;

        Session(int layers, boolean active) {
            this.layers = layers;
            this.active = active;
        }

        @Override
        public boolean runLayer(int layer) {
            Layers.checkLayer(layer, layers, ID);
            return true;
        }

        @Override
        public boolean runFfn(int layer) {
            Layers.checkLayer(layer, layers, ID);
            if (!active || layer < protectFirst || layer >= layers - protectLast) {
                return true;
            }
            return !(lastSimilarity > threshold);
        }

        @Override
        public void observeFfn(int layer, NDArray input, NDArray output) {
            if (active) {
                lastSimilarity = meanCosine(input, output);
            }
        }
    }
}
