package dev.kiln.core.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.nn.Parameter;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import ai.djl.training.ParameterStore;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.LossTerm;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

/**
 * Trains a zoo model on labelled data: a manual GradientCollector loop with soft-target cross-entropy, optional
 * mixed-sample augmentation, a per-step warm-up + cosine learning rate, evaluation and a checkpoint after every
 * epoch, and exact resume.
 *
 * <p>Reproducibility: every epoch's randomness (sample order, augmentation choice and draws, the engine generator
 * that device-side sampling uses) is derived from {@code (seed, epoch)} alone, so a run resumed after epoch k from
 * the checkpoint (parameters, batch-norm statistics and optimiser state) is identical to one that never stopped,
 * and with one thread the same seed gives byte-identical parameters.
 */
public final class TrainingRun {
    /** The checkpoint file inside {@link TrainingConfig#checkpointDir()}, overwritten atomically every epoch. */
    public static final String CHECKPOINT = "last.safetensors";
    private static final String OPTIMIZER_PREFIX = "optimizer.";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final TrainingConfig config;
    private final ImageDataset rawTrain;
    private final ImageDataset rawEval;
    private final TrainingListener listener;
    private StepHook stepHook;
    private Map<String, NDArray> initialParameters;

    /**
     * @param config the run's settings
     * @param train training samples
     * @param eval samples evaluated after every epoch (the test split), or null
     * @param listener progress receiver, or null
     */
    public TrainingRun(TrainingConfig config, ImageDataset train, ImageDataset eval, TrainingListener listener) {
        this.config = config;
        this.rawTrain = train;
        this.rawEval = eval;
        this.listener = listener == null ? new TrainingListener() {
        } : listener;
        if (eval != null && (eval.numClasses() != train.numClasses() || !eval.sampleShape().equals(
                train.sampleShape()))) {
            throw new KilnException("evaluation data " + eval + " does not match training data " + train);
        }
    }

    /** Calls {@code hook} after every optimiser step (for example to re-apply a pruning mask); returns this run. */
    public TrainingRun withStepHook(StepHook hook) {
        this.stepHook = hook;
        return this;
    }

    /**
     * Starts from these parameters (all of the model's, by stable name) instead of the seeded initialisation, for
     * fine-tuning; a checkpoint being resumed still takes precedence. Returns this run.
     */
    public TrainingRun startingFrom(Map<String, NDArray> parameters) {
        this.initialParameters = parameters;
        return this;
    }

    /** The checkpoint this run writes and resumes from, or null when it has no checkpoint folder. */
    public Path checkpointPath() {
        return config.checkpointDir() == null ? null : config.checkpointDir().resolve(CHECKPOINT);
    }

    /** Runs (or resumes) training; the model's parameters live in {@code manager}. */
    public TrainingResult run(NDManager manager) {
        Engine engine = manager.getEngine();
        if (config.threads() > 0) {
            JniUtils.setNumThreads(config.threads());
        }
        Normalization stats = rawTrain.normalization();
        ImageDataset train = rawTrain;
        ImageDataset eval = rawEval;
        if (config.normalize() && stats == null) {
            stats = train.computeNormalization();
            train = train.normalized(stats);
        }
        if (eval != null && stats != null && eval.normalization() == null) {
            eval = eval.normalized(stats);
        }
        KilnModel model = ModelZoo.build(config.model(), config.modelParameters(), train.sampleShape(),
                train.numClasses()).initialize(manager, config.seed());
        Map<String, Parameter> params = model.parameters();
        if (initialParameters != null) {
            model.loadParameters(initialParameters);
        }
        ParameterOptimizer optimizer = config.optimizer().equals("adamw")
                ? new AdamWOptimizer(config.beta1(), config.beta2(), 1e-8, config.weightDecay())
                : new SgdOptimizer(config.momentum(), config.nesterov(), config.weightDecay());
        Map<String, String> identity = identity(train, stats, model);

        int startEpoch = 0;
        Path checkpoint = checkpointPath();
        if (config.resume() && Files.exists(checkpoint)) {
            startEpoch = restore(checkpoint, identity, model, optimizer, manager);
        }

        int batchSize = config.batchSize();
        int stepsPerEpoch = train.batchCount(batchSize);
        long totalSteps = (long) stepsPerEpoch * config.epochs();
        WarmupCosineSchedule schedule = new WarmupCosineSchedule(config.learningRate(), config.minLearningRate(),
                config.warmupSteps(), totalSteps);
        ParameterStore store = new ParameterStore(manager, false);
        List<Augmentation> augmentations = config.augmentations();
        List<TrainingListener.EpochResult> history = new ArrayList<>();
        long runStart = System.nanoTime();
        long stepsThisRun = 0;
        int lastGoodEpoch = startEpoch;

        for (int epoch = startEpoch; epoch < config.epochs(); epoch++) {
            long epochStart = System.nanoTime();
            long epochSeed = epochSeed(config.seed(), epoch);
            engine.setRandomSeed((int) (epochSeed ^ (epochSeed >>> 32)));
            SplittableRandom random = new SplittableRandom(epochSeed);
            int[] order = ImageDataset.permutation(train.size(), random.nextLong());
            SplittableRandom mixRandom = random.split();
            double lossSum = 0;
            long correct = 0;
            for (int b = 0; b < stepsPerEpoch; b++) {
                long step = (long) epoch * stepsPerEpoch + b;
                int from = b * batchSize;
                int count = Math.min(batchSize, train.size() - from);
                try (NDManager scope = manager.newSubManager()) {
                    NDList batch = train.batch(scope, order, from, count);
                    Batch plain = new Batch(batch.get(0), batch.get(1), train.numClasses());
                    NDArray inputs = plain.inputs();
                    NDArray targets;
                    LossTerm extra = null;
                    if (augmentations.isEmpty()) {
                        targets = plain.softTargets();
                    } else {
                        int pick = augmentations.size() == 1 ? 0 : mixRandom.nextInt(augmentations.size());
                        MixedBatch mixed = augmentations.get(pick).mix(plain,
                                new MixContext(mixRandom, epoch, config.epochs(), step));
                        checkMixed(mixed, plain, pick);
                        inputs = mixed.inputs();
                        targets = mixed.targets();
                        extra = mixed.extraLoss();
                    }
                    NDArray logits;
                    NDArray loss;
                    try (GradientCollector collector = engine.newGradientCollector()) {
                        logits = model.forward(store, inputs, true);
                        loss = config.loss().equals("bce")
                                ? SoftTargetLoss.binaryCrossEntropy(logits, targets, config.bceThreshold())
                                : SoftTargetLoss.crossEntropy(logits, targets);
                        if (extra != null) {
                            loss = loss.add(extra.compute(logits));
                        }
                        collector.backward(loss);
                    }
                    double lossValue = loss.getFloat();
                    if (!Double.isFinite(lossValue)) {
                        zeroGradients(params);
                        throw diverged(lossValue, epoch, b, stepsPerEpoch, step, schedule.at(step), checkpoint,
                                lastGoodEpoch);
                    }
                    double lr = schedule.at(step);
                    optimizer.step(params, lr, step);
                    zeroGradients(params);
                    if (stepHook != null) {
                        stepHook.afterStep(params, step);
                    }
                    long batchCorrect = logits.argMax(1).eq(targets.argMax(1)).sum().getLong();
                    lossSum += lossValue * count;
                    correct += batchCorrect;
                    stepsThisRun++;
                    double elapsed = (System.nanoTime() - runStart) / 1e9;
                    double epochElapsed = (System.nanoTime() - epochStart) / 1e9;
                    long remaining = totalSteps - step - 1;
                    listener.onStep(new TrainingListener.StepProgress(epoch, config.epochs(), step, totalSteps,
                            lossValue, (double) batchCorrect / count, lr,
                            (from + count) / Math.max(epochElapsed, 1e-9), elapsed / stepsThisRun * remaining));
                }
            }
            double[] evaluated = eval == null ? new double[] {Double.NaN, Double.NaN}
                    : evaluate(model, eval, manager, store, batchSize);
            if (checkpoint != null) {
                writeCheckpoint(checkpoint, identity, epoch + 1, model, optimizer);
            }
            lastGoodEpoch = epoch + 1;
            TrainingListener.EpochResult result = new TrainingListener.EpochResult(epoch, lossSum / train.size(),
                    (double) correct / train.size(), evaluated[0], evaluated[1],
                    (System.nanoTime() - epochStart) / 1e9);
            history.add(result);
            listener.onEpoch(result);
        }
        Map<String, String> metadata = new LinkedHashMap<>(identity);
        metadata.put("kiln.epochs.done", Integer.toString(config.epochs()));
        return new TrainingResult(model, history, stats, metadata, startEpoch);
    }

    /** Loss and accuracy of {@code model} on {@code data}, in evaluation mode (running batch-norm statistics). */
    public static double[] evaluate(KilnModel model, ImageDataset data, NDManager manager, ParameterStore store,
            int batchSize) {
        int[] order = new int[data.size()];
        Arrays.setAll(order, i -> i);
        double lossSum = 0;
        long correct = 0;
        for (int from = 0; from < data.size(); from += batchSize) {
            int count = Math.min(batchSize, data.size() - from);
            try (NDManager scope = manager.newSubManager()) {
                NDList batch = data.batch(scope, order, from, count);
                NDArray logits = model.forward(store, batch.get(0), false);
                NDArray targets = batch.get(1).oneHot(data.numClasses());
                lossSum += SoftTargetLoss.crossEntropy(logits, targets).getFloat() * count;
                correct += logits.argMax(1).eq(batch.get(1)).sum().getLong();
            }
        }
        return new double[] {lossSum / data.size(), (double) correct / data.size()};
    }

    /**
     * Writes the model's parameters (stable names, no optimiser state) and {@code metadata} to {@code file},
     * atomically.
     */
    public static void saveModel(KilnModel model, Map<String, String> metadata, Path file) {
        Map<String, String> meta = new LinkedHashMap<>(metadata);
        meta.put("kiln.format", "model-v1");
        Map<String, NDArray> arrays = new LinkedHashMap<>();
        model.parameters().forEach((name, p) -> arrays.put(name, p.getArray()));
        SafetensorsWriter.save(file, meta, arrays);
    }

    /** A well-mixed seed per epoch, so epochs do not share random streams and need no saved RNG state. */
    static long epochSeed(long seed, int epoch) {
        return new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (epoch + 1))).nextLong();
    }

    private void checkMixed(MixedBatch mixed, Batch batch, int pick) {
        String which = "augmentation #" + (pick + 1) + " (" + config.augmentations().get(pick).getClass().getName()
                + ")";
        if (mixed == null || mixed.inputs() == null || mixed.targets() == null) {
            throw new KilnException(which + " returned no mixed inputs or targets");
        }
        if (!mixed.inputs().getShape().equals(batch.inputs().getShape())) {
            throw new KilnException(which + " changed the input shape from " + batch.inputs().getShape() + " to "
                    + mixed.inputs().getShape());
        }
        if (!mixed.targets().getShape().equals(new ai.djl.ndarray.types.Shape(batch.size(), batch.numClasses()))) {
            throw new KilnException(which + " returned targets of shape " + mixed.targets().getShape() + "; expected ("
                    + batch.size() + ", " + batch.numClasses() + ")");
        }
    }

    private static void zeroGradients(Map<String, Parameter> params) {
        for (Parameter p : params.values()) {
            NDArray array = p.getArray();
            // Gradients accumulate across backward passes in the PyTorch engine until zeroed.
            if (p.requiresGradient() && array.hasGradient()) {
                JniUtils.zeroGrad((PtNDArray) array);
            }
        }
    }

    private static KilnException diverged(double loss, int epoch, int batch, int stepsPerEpoch, long step, double lr,
            Path checkpoint, int lastGoodEpoch) {
        String kept = checkpoint == null ? "no checkpoint folder was set"
                : lastGoodEpoch == 0 ? "no checkpoint had been written yet"
                : "the last good checkpoint " + checkpoint + " (after epoch " + lastGoodEpoch + ") is kept";
        return new KilnException(String.format(Locale.ROOT, "training diverged: the loss is %s at epoch %d, step %d"
                + " of %d (global step %d, learning rate %g); %s. Lower the learning rate or add warm-up.",
                Double.toString(loss), epoch + 1, batch + 1, stepsPerEpoch, step, lr, kept));
    }

    /** What must match for a checkpoint to continue this run. */
    private Map<String, String> identity(ImageDataset train, Normalization stats, KilnModel model) {
        Map<String, String> id = new LinkedHashMap<>();
        id.put("kiln.model", config.model());
        id.put("kiln.model.parameters", json(new TreeMap<>(model.modelParameters().asMap())));
        id.put("kiln.data.sha256", train.sha256());
        id.put("kiln.data.classes", json(train.classNames()));
        id.put("kiln.input.shape", train.sampleShape().toString());
        id.put("kiln.normalization", stats == null ? "none" : json(new TreeMap<>(Map.of("mean", stats.mean(),
                "std", stats.std()))));
        id.put("kiln.seed", Long.toString(config.seed()));
        id.put("kiln.epochs", Integer.toString(config.epochs()));
        id.put("kiln.batch-size", Integer.toString(config.batchSize()));
        if (!config.loss().equals("cross-entropy")) {
            id.put("kiln.loss", config.loss() + (config.bceThreshold() >= 0 ? ">" + config.bceThreshold() : ""));
        }
        id.put("kiln.optimizer", json(new TreeMap<>(Map.of("name", config.optimizer(), "lr", config.learningRate(),
                "min-lr", config.minLearningRate(), "warmup-steps", config.warmupSteps(), "momentum",
                config.momentum(), "nesterov", config.nesterov(), "weight-decay", config.weightDecay(), "beta1",
                config.beta1(), "beta2", config.beta2()))));
        List<String> augmentations = new ArrayList<>();
        // A lambda's class name carries a per-JVM suffix; only its stable part identifies the run across processes.
        config.augmentations().forEach(a -> augmentations.add(a.getClass().getName().replaceAll("\\$\\$Lambda.*",
                "\\$\\$Lambda")));
        id.put("kiln.augmentations", json(augmentations));
        return id;
    }

    private static String json(Object value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private void writeCheckpoint(Path file, Map<String, String> identity, int epochsDone, KilnModel model,
            ParameterOptimizer optimizer) {
        Map<String, String> meta = new LinkedHashMap<>(identity);
        meta.put("kiln.format", "checkpoint-v1");
        meta.put("kiln.epochs.done", Integer.toString(epochsDone));
        Map<String, NDArray> arrays = new LinkedHashMap<>();
        model.parameters().forEach((name, p) -> arrays.put(name, p.getArray()));
        arrays.putAll(optimizer.state());
        try {
            Files.createDirectories(file.getParent());
        } catch (java.io.IOException e) {
            throw new KilnException("cannot create checkpoint folder " + file.getParent() + ": " + e.getMessage(), e);
        }
        SafetensorsWriter.save(file, meta, arrays);
    }

    /** Restores parameters and optimiser state; returns the number of epochs the checkpoint had finished. */
    private int restore(Path file, Map<String, String> identity, KilnModel model, ParameterOptimizer optimizer,
            NDManager manager) {
        try (SafetensorsReader reader = SafetensorsReader.open(file); NDManager scope = manager.newSubManager()) {
            Map<String, String> meta = reader.metadata();
            if (!"checkpoint-v1".equals(meta.get("kiln.format"))) {
                throw new KilnException(file + " is not a Kiln training checkpoint (kiln.format is "
                        + meta.get("kiln.format") + "); delete it or turn resume off");
            }
            List<String> differences = new ArrayList<>();
            identity.forEach((key, value) -> {
                if (!value.equals(meta.get(key))) {
                    differences.add(key + " was " + meta.get(key) + ", now " + value);
                }
            });
            if (!differences.isEmpty()) {
                throw new KilnException("cannot resume from " + file + ": it belongs to a different run ("
                        + String.join("; ", differences) + "); delete it or turn resume off");
            }
            int done;
            try {
                done = Integer.parseInt(meta.get("kiln.epochs.done"));
            } catch (NumberFormatException e) {
                throw new KilnException(file + ": kiln.epochs.done is not a number: " + meta.get("kiln.epochs.done"));
            }
            Map<String, NDArray> weights = new LinkedHashMap<>();
            Map<String, NDArray> state = new LinkedHashMap<>();
            for (String name : reader.names()) {
                NDArray array = reader.read(name, scope);
                (name.startsWith(OPTIMIZER_PREFIX) ? state : weights).put(name, array);
            }
            model.loadParameters(weights);
            optimizer.loadState(state, manager);
            return done;
        }
    }
}
