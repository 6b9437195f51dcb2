package dev.kiln.skip;

import dev.kiln.spi.skip.SkipSession;

/** A session that runs exactly the layers marked in {@code keep}, with optional early-exit loss weights. */
final class FixedSetSession implements SkipSession {
    private final boolean[] keep;
    private final String policy;
    private final double[] exitWeights;

    FixedSetSession(boolean[] keep, String policy) {
        this(keep, policy, null);
    }

    /** {@code exitWeights}: one per layer, or null for none. */
    FixedSetSession(boolean[] keep, String policy, double[] exitWeights) {
        this.keep = keep;
        this.policy = policy;
        this.exitWeights = exitWeights;
    }

    @Override
    public boolean runLayer(int layer) {
        Layers.checkLayer(layer, keep.length, policy);
        return keep[layer];
    }

    @Override
    public double exitLossWeight(int layer) {
        Layers.checkLayer(layer, keep.length, policy);
        return exitWeights == null ? 0 : exitWeights[layer];
    }

    static boolean[] all(int layers) {
        boolean[] keep = new boolean[layers];
        java.util.Arrays.fill(keep, true);
        return keep;
    }
}
