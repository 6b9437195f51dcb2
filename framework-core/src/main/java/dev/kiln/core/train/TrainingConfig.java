package dev.kiln.core.train;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Augmentation;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Everything a training run needs, validated when built: a bad value fails with a {@link KilnException} naming the
 * setting before any work starts. Create with {@link #builder(String)}.
 *
 * @param model zoo model id ({@code mlp}, {@code cnn}, {@code resnet})
 * @param modelParameters the model's parameters as written in a pom
 * @param epochs passes over the training data
 * @param batchSize samples per step; the last partial batch of an epoch is kept
 * @param optimizer {@code sgd} or {@code adamw}
 * @param learningRate peak learning rate
 * @param minLearningRate learning rate at the last step of the cosine schedule
 * @param warmupSteps steps of linear warm-up
 * @param momentum SGD momentum (0 for plain SGD)
 * @param nesterov Nesterov momentum for SGD
 * @param weightDecay L2 penalty for SGD, decoupled decay for AdamW
 * @param beta1 AdamW first-moment decay
 * @param beta2 AdamW second-moment decay
 * @param seed seeds weight initialisation, shuffling and augmentation
 * @param threads intra-op threads for libtorch; 0 leaves the current setting
 * @param normalize normalise inputs with mean and std computed on the training data
 * @param augmentations mixed-sample augmentations; with several, one is picked per batch uniformly at random
 * @param checkpointDir where {@code last.safetensors} is written after every epoch; null for none
 * @param resume continue from {@code checkpointDir/last.safetensors} when it exists
 * @param loss {@code cross-entropy} (softmax, soft targets) or {@code bce} (per-class binary cross-entropy)
 * @param bceThreshold with {@code bce}: binarise targets above this value; negative keeps them soft
 */
public record TrainingConfig(String model, Map<String, String> modelParameters, int epochs, int batchSize,
        String optimizer, double learningRate, double minLearningRate, int warmupSteps, double momentum,
        boolean nesterov, double weightDecay, double beta1, double beta2, long seed, int threads, boolean normalize,
        List<Augmentation> augmentations, Path checkpointDir, boolean resume, String loss, double bceThreshold) {

    /** The losses a config may name. */
    public static final List<String> LOSSES = List.of("cross-entropy", "bce");

    /** The optimisers a config may name. */
    public static final List<String> OPTIMIZERS = List.of("sgd", "adamw");

    public TrainingConfig {
        modelParameters = Map.copyOf(modelParameters);
        augmentations = List.copyOf(augmentations);
        optimizer = optimizer.toLowerCase(Locale.ROOT);
        require(epochs >= 1, "epochs", epochs, "at least 1");
        require(batchSize >= 1, "batchSize", batchSize, "at least 1");
        require(OPTIMIZERS.contains(optimizer), "optimizer", optimizer, "one of " + String.join(", ", OPTIMIZERS));
        require(learningRate > 0 && Double.isFinite(learningRate), "learningRate", learningRate,
                "a positive finite number");
        require(minLearningRate >= 0 && minLearningRate <= learningRate, "minLearningRate", minLearningRate,
                "in [0, learningRate]");
        require(warmupSteps >= 0, "warmupSteps", warmupSteps, "at least 0");
        require(momentum >= 0 && momentum < 1, "momentum", momentum, "in [0, 1)");
        require(!nesterov || momentum > 0, "nesterov", nesterov, "false when momentum is 0");
        require(weightDecay >= 0 && Double.isFinite(weightDecay), "weightDecay", weightDecay, "at least 0");
        require(beta1 >= 0 && beta1 < 1, "beta1", beta1, "in [0, 1)");
        require(beta2 >= 0 && beta2 < 1, "beta2", beta2, "in [0, 1)");
        require(threads >= 0, "threads", threads, "at least 0");
        require(!resume || checkpointDir != null, "resume", resume, "false when there is no checkpointDir");
        loss = loss.toLowerCase(Locale.ROOT);
        require(LOSSES.contains(loss), "loss", loss, "one of " + String.join(", ", LOSSES));
        require(bceThreshold < 1 && !Double.isNaN(bceThreshold), "bceThreshold", bceThreshold,
                "below 1 (negative to keep soft targets)");
    }

    private static void require(boolean ok, String name, Object value, String allowed) {
        if (!ok) {
            throw new KilnException("training setting '" + name + "' is " + value + "; it must be " + allowed);
        }
    }

    /** A builder with the defaults: 10 epochs, batch 64, SGD momentum 0.9, lr 0.05, seed 42, 1 thread. */
    public static Builder builder(String model) {
        return new Builder(model);
    }

    /** A builder starting from this config. */
    public Builder toBuilder() {
        Builder b = new Builder(model);
        b.modelParameters = modelParameters;
        b.epochs = epochs;
        b.batchSize = batchSize;
        b.optimizer = optimizer;
        b.learningRate = learningRate;
        b.minLearningRate = minLearningRate;
        b.warmupSteps = warmupSteps;
        b.momentum = momentum;
        b.nesterov = nesterov;
        b.weightDecay = weightDecay;
        b.beta1 = beta1;
        b.beta2 = beta2;
        b.seed = seed;
        b.threads = threads;
        b.normalize = normalize;
        b.augmentations = new ArrayList<>(augmentations);
        b.checkpointDir = checkpointDir;
        b.resume = resume;
        b.loss = loss;
        b.bceThreshold = bceThreshold;
        return b;
    }

    /** Builds a {@link TrainingConfig}; every setter has a default. */
    public static final class Builder {
        private final String model;
        private Map<String, String> modelParameters = Map.of();
        private int epochs = 10;
        private int batchSize = 64;
        private String optimizer = "sgd";
        private double learningRate = 0.05;
        private double minLearningRate = 0;
        private int warmupSteps = 0;
        private double momentum = 0.9;
        private boolean nesterov = false;
        private double weightDecay = 5e-4;
        private double beta1 = 0.9;
        private double beta2 = 0.999;
        private long seed = 42;
        private int threads = 1;
        private boolean normalize = true;
        private List<Augmentation> augmentations = new ArrayList<>();
        private Path checkpointDir;
        private boolean resume;
        private String loss = "cross-entropy";
        private double bceThreshold = -1;

        private Builder(String model) {
            this.model = model;
        }

        public Builder modelParameters(Map<String, String> v) {
            modelParameters = v;
            return this;
        }

        public Builder epochs(int v) {
            epochs = v;
            return this;
        }

        public Builder batchSize(int v) {
            batchSize = v;
            return this;
        }

        public Builder optimizer(String v) {
            optimizer = v;
            return this;
        }

        public Builder learningRate(double v) {
            learningRate = v;
            return this;
        }

        public Builder minLearningRate(double v) {
            minLearningRate = v;
            return this;
        }

        public Builder warmupSteps(int v) {
            warmupSteps = v;
            return this;
        }

        public Builder momentum(double v) {
            momentum = v;
            return this;
        }

        public Builder nesterov(boolean v) {
            nesterov = v;
            return this;
        }

        public Builder weightDecay(double v) {
            weightDecay = v;
            return this;
        }

        public Builder betas(double b1, double b2) {
            beta1 = b1;
            beta2 = b2;
            return this;
        }

        public Builder seed(long v) {
            seed = v;
            return this;
        }

        public Builder threads(int v) {
            threads = v;
            return this;
        }

        public Builder normalize(boolean v) {
            normalize = v;
            return this;
        }

        public Builder augmentations(List<Augmentation> v) {
            augmentations = new ArrayList<>(v);
            return this;
        }

        public Builder checkpointDir(Path v) {
            checkpointDir = v;
            return this;
        }

        public Builder loss(String v) {
            loss = v;
            return this;
        }

        public Builder bceThreshold(double v) {
            bceThreshold = v;
            return this;
        }

        public Builder resume(boolean v) {
            resume = v;
            return this;
        }

        public TrainingConfig build() {
            return new TrainingConfig(model, modelParameters, epochs, batchSize, optimizer, learningRate,
                    minLearningRate, warmupSteps, momentum, nesterov, weightDecay, beta1, beta2, seed, threads,
                    normalize, augmentations, checkpointDir, resume, loss, bceThreshold);
        }
    }
}
