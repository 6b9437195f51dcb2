package dev.kiln.spi.augment;

import java.util.random.RandomGenerator;

/**
 * Where in training a batch is mixed, and the seeded random source to draw from.
 *
 * <p>Scalar draws (lambda from a Beta distribution, which DJL cannot sample, box positions, which technique to
 * apply) come from {@link #random()}, which the trainer seeds per run so the same seed gives the same batches.
 * Per-element randomness belongs on the device ({@code manager.randomUniform(...)}), but the engine's generator is
 * global: seed it from this source first ({@code engine.setRandomSeed(random().nextInt())}), or the batch is not
 * reproducible from the run's seed.
 *
 * @param random seeded random source for host-side scalar draws
 * @param epoch current epoch, from 0
 * @param totalEpochs number of epochs in the run
 * @param step global optimisation step, from 0
 */
public record MixContext(RandomGenerator random, int epoch, int totalEpochs, long step) {
}
