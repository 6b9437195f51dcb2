package dev.kiln.core.data;

import java.util.Arrays;

/**
 * Per-channel statistics for {@code (x - mean) / std}; computed on a training split and stored with every model so
 * that evaluation and inference normalise the same way.
 *
 * @param mean one value per channel
 * @param std one positive value per channel
 */
public record Normalization(float[] mean, float[] std) {

    public Normalization {
        mean = mean.clone();
        std = std.clone();
    }

    @Override
    public float[] mean() {
        return mean.clone();
    }

    @Override
    public float[] std() {
        return std.clone();
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof Normalization n && Arrays.equals(mean, n.mean) && Arrays.equals(std, n.std);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(mean) + Arrays.hashCode(std);
    }

    @Override
    public String toString() {
        return "Normalization[mean=" + Arrays.toString(mean) + ", std=" + Arrays.toString(std) + "]";
    }
}
