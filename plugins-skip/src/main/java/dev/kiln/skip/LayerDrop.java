package dev.kiln.skip;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.random.RandomGenerator;

/**
 * LayerSkip's layer dropout with the linear schedule: in a training pass layer {@code l} is dropped with probability
 * {@code rate * l / (L - 1)}, so the first layer never drops and the last drops with {@code rate}. Other phases run
 * every layer. Decisions are per pass (the whole batch drops the same layers), drawn in layer order from the given
 * generator with one {@code nextDouble()} per layer {@code 1..L-1}, so a seeded generator reproduces them.
 */
final class LayerDrop implements SkipPolicy {
    static final String ID = "layerdrop";
    private final double rate;

    LayerDrop(double rate) {
        this.rate = rate;
    }

    /** The drop probability of {@code layer} out of {@code layers}. */
    static double probability(double rate, int layer, int layers) {
        return layers < 2 ? 0 : rate * layer / (layers - 1);
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.TRAINING_ONLY;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        int layers = Layers.count(layout, ID);
        boolean[] keep = FixedSetSession.all(layers);
        if (phase == Phase.TRAIN) {
            if (random == null) {
                throw new KilnException("skip policy 'layerdrop': a training pass needs a random generator");
            }
            for (int l = 1; l < layers; l++) {
                keep[l] = random.nextDouble() >= probability(rate, l, layers);
            }
        }
        return new FixedSetSession(keep, ID);
    }
}
