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
 * Drops one contiguous block of layers in every pass (prompt included).
 *
 * <p>{@code drop} below 1 is a fraction of the layers, rounded with {@code Math.round}; 1 or more is a whole count.
 * {@code top} drops the last layers, {@code bottom} the first ones, {@code middle} the block starting at
 * {@code floor((L - count) / 2)}. At least one layer must remain.
 */
final class ContiguousSkip implements SkipPolicy {
    static final String ID = "contiguous";
    private final double drop;
    private final String where;

    ContiguousSkip(double drop, String where) {
        if (drop >= 1 && drop != Math.rint(drop)) {
            throw new KilnException("skip policy 'contiguous': drop " + drop
                    + " is neither a fraction below 1 nor a whole number of layers");
        }
        this.drop = drop;
        this.where = where;
    }

    /** The kept layers as a mask. */
    static boolean[] keep(int layers, double drop, String where) {
        long count = drop < 1 ? Math.round(drop * layers) : (long) drop;
        if (count >= layers) {
            throw new KilnException("skip policy 'contiguous': drop " + drop + " removes " + count + " of "
                    + layers + " layers; at least one layer must remain");
        }
        int start;
        switch (where.toLowerCase(Locale.ROOT)) {
            case "top":
                start = (int) (layers - count);
                break;
            case "bottom":
                start = 0;
                break;
            case "middle":
                start = (int) ((layers - count) / 2);
                break;
            default:
                throw new KilnException("skip policy 'contiguous': where '" + where
                        + "' is not one of top, bottom, middle");
        }
        boolean[] keep = FixedSetSession.all(layers);
        for (int l = start; l < start + count; l++) {
            keep[l] = false;
        }
        return keep;
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.FIXED_LAYER_SET;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        return new FixedSetSession(keep(Layers.count(layout, ID), drop, where), ID);
    }
}
