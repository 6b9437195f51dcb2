package dev.kiln.skip;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.random.RandomGenerator;

/**
 * SkipDecode: a per-position depth shared by the whole batch that only decreases along the sequence; the top
 * {@code depth} layers run and the lower ones are skipped.
 *
 * <p>{@code depth(p) = maxDepth - floor((maxDepth - minDepth) * min(p, maxPosition) / maxPosition)}, so depth is
 * {@code maxDepth} at position 0, {@code minDepth} from {@code maxPosition} on, and never increases. Because the
 * skipped layers are always the lowest ones and their number only grows, every layer a token runs has cache
 * entries for all earlier tokens. Prompt passes run every layer; so do {@code TRAIN} and {@code FORWARD} passes.
 * A {@code maxDepth} of 0 means all layers.
 */
final class SkipDecode implements SkipPolicy {
    static final String ID = "skipdecode";
    private final int maxDepth;
    private final int minDepth;
    private final int maxPosition;

    SkipDecode(int maxDepth, int minDepth, int maxPosition) {
        this.maxDepth = maxDepth;
        this.minDepth = minDepth;
        this.maxPosition = maxPosition;
    }

    /** The number of top layers that run at {@code position}, for a model of {@code layers} layers. */
    int depth(int layers, int position) {
        int hi = maxDepth == 0 ? layers : maxDepth;
        if (hi > layers) {
            throw new KilnException("skip policy 'skipdecode': max-depth " + maxDepth + " exceeds the model's "
                    + layers + " layers");
        }
        if (minDepth > hi) {
            throw new KilnException("skip policy 'skipdecode': min-depth " + minDepth + " exceeds max-depth " + hi);
        }
        if (position < 0) {
            throw new KilnException("skip policy 'skipdecode': position " + position + " is negative");
        }
        long p = Math.min(position, maxPosition);
        return (int) (hi - Math.floorDiv((long) (hi - minDepth) * p, maxPosition));
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.MONOTONE_EXIT;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        int layers = Layers.count(layout, ID);
        boolean[] keep = FixedSetSession.all(layers);
        if (phase == Phase.DECODE) {
            int depth = depth(layers, position);
            for (int l = 0; l < layers - depth; l++) {
                keep[l] = false;
            }
        }
        return new FixedSetSession(keep, ID);
    }
}
