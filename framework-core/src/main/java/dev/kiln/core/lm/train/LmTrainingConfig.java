package dev.kiln.core.lm.train;

import dev.kiln.spi.KilnException;

/**
 * Settings of one language-model training run.
 *
 * @param steps optimisation steps
 * @param batchSize sequences per step
 * @param seqLength tokens per sequence (at most the model's maxLength)
 * @param learningRate peak AdamW rate
 * @param minLearningRate rate at the last step of the cosine
 * @param warmupSteps linear warm-up steps
 * @param weightDecay decoupled decay on matrices (biases and LayerNorm gains are not decayed)
 * @param gradClip global gradient-norm clip, 0 for none
 * @param seed seeds batch sampling and the layer-dropout decisions
 * @param logEvery steps between progress lines, 0 for none
 */
public record LmTrainingConfig(int steps, int batchSize, int seqLength, double learningRate, double minLearningRate,
        int warmupSteps, double weightDecay, double gradClip, long seed, int logEvery) {

    /** Validates every field; the message names the bad one. */
    public LmTrainingConfig {
        positive("steps", steps);
        positive("batchSize", batchSize);
        positive("seqLength", seqLength);
        if (!(learningRate > 0) || Double.isInfinite(learningRate)) {
            throw new KilnException("lm training: learningRate must be positive, got " + learningRate);
        }
        if (!(minLearningRate >= 0) || minLearningRate > learningRate) {
            throw new KilnException("lm training: minLearningRate must be in [0, learningRate], got "
                    + minLearningRate);
        }
        if (warmupSteps < 0 || warmupSteps >= steps) {
            throw new KilnException("lm training: warmupSteps must be in [0, steps), got " + warmupSteps);
        }
        if (!(weightDecay >= 0) || weightDecay >= 1) {
            throw new KilnException("lm training: weightDecay must be in [0, 1), got " + weightDecay);
        }
        if (!(gradClip >= 0)) {
            throw new KilnException("lm training: gradClip must be 0 or positive, got " + gradClip);
        }
        if (logEvery < 0) {
            throw new KilnException("lm training: logEvery must be 0 or positive, got " + logEvery);
        }
    }

    private static void positive(String name, int value) {
        if (value < 1) {
            throw new KilnException("lm training: " + name + " must be at least 1, got " + value);
        }
    }

    /** GPT-style defaults for a small byte model: batch 16 of 128 bytes, lr 1e-3 to 1e-4, 5% warm-up. */
    public static LmTrainingConfig defaults(int steps, long seed) {
        return new LmTrainingConfig(steps, 16, 128, 1e-3, 1e-4, Math.max(0, Math.min(steps - 1, steps / 20)),
                0.1, 1.0, seed, 100);
    }
}
