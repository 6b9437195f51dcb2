package dev.kiln.skip;

import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.random.RandomGenerator;

/**
 * Unified Layer Skipping: one evenly spaced layer set, chosen from the target speedup alone, for every token.
 *
 * <p>With {@code L} layers and speedup {@code s}: {@code n = Math.round(L / s)} (half rounds up), raised to 2 when
 * {@code L >= 2} and capped at {@code L}. Kept layer {@code i} ({@code 0 <= i < n}) is
 * {@code Math.round(i * (L - 1) / (n - 1))}, so the first and last layers are always kept and the spacing is even;
 * the indices are distinct because {@code (L - 1) / (n - 1) >= 1}. A one-layer model keeps its only layer. This
 * differs from the reference code's integer {@code interval} walk, which can bunch the kept layers at the bottom.
 *
 * <p>With {@code prefill = full} the prompt runs every layer (as the paper does); decoding only ever reads the kept
 * layers' cache entries, which the full prefill has written. With {@code same} the prompt uses the kept set too.
 */
final class UnifiedSkip implements SkipPolicy {
    static final String ID = "unified";
    private final double speedup;
    private final boolean fullPrefill;

    UnifiedSkip(double speedup, boolean fullPrefill) {
        this.speedup = speedup;
        this.fullPrefill = fullPrefill;
    }

    /** The kept layers for {@code layers} layers, as a mask. */
    static boolean[] keep(int layers, double speedup) {
        boolean[] keep = new boolean[layers];
        if (layers == 1) {
            keep[0] = true;
            return keep;
        }
        long n = Math.round(layers / speedup);
        n = Math.max(2, Math.min(layers, n));
        for (long i = 0; i < n; i++) {
            keep[(int) Math.round((double) i * (layers - 1) / (n - 1))] = true;
        }
        return keep;
    }

    @Override
    public KvCacheRule kvCacheRule() {
        return KvCacheRule.FIXED_LAYER_SET;
    }

    @Override
    public SkipSession begin(ModelLayout layout, Phase phase, int position, RandomGenerator random) {
        int layers = Layers.count(layout, ID);
        if (phase == Phase.PREFILL && fullPrefill) {
            return new FixedSetSession(FixedSetSession.all(layers), ID);
        }
        return new FixedSetSession(keep(layers, speedup), ID);
    }
}
