package dev.kiln.skip;

import dev.kiln.spi.skip.SkipSession;

/** A session that runs exactly the layers marked in {@code keep}. */
final class FixedSetSession implements SkipSession {
    private final boolean[] keep;
    private final String policy;

    FixedSetSession(boolean[] keep, String policy) {
        this.keep = keep;
        this.policy = policy;
    }

    @Override
    public boolean runLayer(int layer) {
        Layers.checkLayer(layer, keep.length, policy);
        return keep[layer];
    }

    static boolean[] all(int layers) {
        boolean[] keep = new boolean[layers];
        java.util.Arrays.fill(keep, true);
        return keep;
    }
}
