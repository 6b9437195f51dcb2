package dev.kiln.skip;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.Locale;
import java.util.random.RandomGenerator;

/**
 * LayerSkip's training recipe: layer dropout with the linear schedule plus an optional early-exit loss.
 *
 * <p>Dropout: in a training pass layer {@code l} is dropped with probability {@code rate * l / (L - 1)}, so the first
 * layer never drops and the last drops with {@code rate}. Other phases run every layer. Decisions are per pass (the
 * whole batch drops the same layers), drawn in layer order from the given generator with one {@code nextDouble()} per
 * layer {@code 1..L-1}, so a seeded generator reproduces them.
 *
 * <p>Early exit (off while {@code early-exit-scale} is 0): the loss also reads the model's head after the layers the
 * curriculum enables in this step. As in torchtune's {@code early_exit_loss}, each enabled exit gets the scale
 * function's value, every exit but the last is multiplied by {@code early-exit-scale}, and the weights are normalised
 * to sum to 1. Curricula: {@code gradual} (torchtune's: layer {@code i} is enabled from step
 * {@code ramp * (L - i) / L} on, top layers first), {@code rotational} (one exit per step, cycling through layers
 * {@code 0..L-2}, as TRL's LayerSkip recipe), {@code none} (every layer, every step). The last layer is always on.
 */
final class LayerDrop implements SkipPolicy {
    static final String ID = "layerdrop";

    /** How the exits' base weights grow with depth (torchtune's loss scale functions, layer {@code l} 0-based). */
    enum ScaleFn {
        UNIFORM, LINEAR, SUM, SQRT, INV, INV_SQRT;

        static ScaleFn parse(String word) {
            return valueOf(word.toUpperCase(Locale.ROOT).replace('-', '_'));
        }

        double of(int layer) {
            double n = layer + 1;
            return switch (this) {
                case UNIFORM -> 1;
                case LINEAR -> n;
                case SUM -> n * (n + 1) / 2;
                case SQRT -> Math.sqrt(n);
                case INV -> 1 / n;
                case INV_SQRT -> 1 / Math.sqrt(n);
            };
        }
    }

    /** Which layers have an exit in a given step. */
    enum Curriculum {
        NONE, ROTATIONAL, GRADUAL;

        static Curriculum parse(String word) {
            return valueOf(word.toUpperCase(Locale.ROOT));
        }
    }

    private final double rate;
    private final double exitScale;
    private final ScaleFn scaleFn;
    private final Curriculum curriculum;
    private final int rampSteps;

    LayerDrop(double rate) {
        this(rate, 0, ScaleFn.LINEAR, Curriculum.GRADUAL, 0);
    }

    LayerDrop(double rate, double exitScale, ScaleFn scaleFn, Curriculum curriculum, int rampSteps) {
        this.rate = rate;
        this.exitScale = exitScale;
        this.scaleFn = scaleFn;
        this.curriculum = curriculum;
        this.rampSteps = rampSteps;
    }

    /** The drop probability of {@code layer} out of {@code layers}. */
    static double probability(double rate, int layer, int layers) {
        return layers < 2 ? 0 : rate * layer / (layers - 1);
    }

    /** The normalised early-exit weights of every layer at training step {@code step}; all zero when off. */
    double[] exitWeights(int layers, int step) {
        double[] w = new double[layers];
        if (exitScale == 0 || layers < 2) {
            return w;
        }
        double sum = 0;
        for (int l = 0; l < layers; l++) {
            if (enabled(l, layers, step)) {
                w[l] = scaleFn.of(l) * (l == layers - 1 ? 1 : exitScale);
                sum += w[l];
            }
        }
        for (int l = 0; l < layers; l++) {
            w[l] /= sum;
        }
        return w;
    }

    private boolean enabled(int layer, int layers, int step) {
        if (layer == layers - 1) {
            return true;
        }
        return switch (curriculum) {
            case NONE -> true;
            case ROTATIONAL -> layer == step % (layers - 1);
            // enabled once step >= ramp * (L - layer) / L, compared in integers so no rounding decides a step
            case GRADUAL -> (long) step * layers >= (long) rampSteps * (layers - layer);
        };
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.TRAINING_ONLY;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        int layers = Layers.count(layout, ID);
        boolean[] keep = FixedSetSession.all(layers);
        if (phase != Phase.TRAIN) {
            return new FixedSetSession(keep, ID);
        }
        if (random == null) {
            throw new KilnException("skip policy 'layerdrop': a training pass needs a random generator");
        }
        if (position < 0) {
            throw new KilnException("skip policy 'layerdrop': training step " + position + " is negative");
        }
        for (int l = 1; l < layers; l++) {
            keep[l] = random.nextDouble() >= probability(rate, l, layers);
        }
        return new FixedSetSession(keep, ID, exitWeights(layers, position));
    }
}
