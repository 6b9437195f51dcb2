package dev.kiln.core.lm;

import dev.kiln.spi.KilnException;

/**
 * How the next token is chosen.
 *
 * @param greedy arg-max when true, otherwise sampling from softmax(logits / temperature)
 * @param temperature sampling temperature, above 0
 * @param seed seeds both the sampler and the skip policy's random generator
 */
public record Decoding(boolean greedy, double temperature, long seed) {

    /** Validates the temperature. */
    public Decoding {
        if (!(temperature > 0) || Double.isInfinite(temperature)) {
            throw new KilnException("decoding: temperature must be a positive number, got " + temperature);
        }
    }

    /** Arg-max decoding; the seed still feeds the skip policy's generator. */
    public static Decoding greedy(long seed) {
        return new Decoding(true, 1, seed);
    }

    /** Seeded sampling at {@code temperature}. */
    public static Decoding sampled(double temperature, long seed) {
        return new Decoding(false, temperature, seed);
    }
}
