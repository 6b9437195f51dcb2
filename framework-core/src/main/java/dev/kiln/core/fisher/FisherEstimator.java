package dev.kiln.core.fisher;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Parameter;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import ai.djl.training.ParameterStore;
import dev.kiln.core.model.CheckpointModels;
import dev.kiln.core.data.Checksums;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.spi.KilnException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Diagonal Fisher information of a trained classifier, the per-parameter importance that Fisher merging (Matena and
 * Raffel 2022) weights each model's parameters by.
 *
 * <p>For N samples x_n drawn without replacement (seeded) from a dataset, the estimate is
 * {@code F = (1/N) sum_n (d log p(y_n | x_n) / d theta)^2}, elementwise, with y_n either
 * <ul>
 *   <li>{@link Mode#EMPIRICAL} (default): the dataset's label of x_n, the "empirical Fisher"; or</li>
 *   <li>{@link Mode#TRUE}: one label drawn from the model's own predictive distribution {@code softmax(logits)},
 *   a one-sample Monte Carlo estimate of the true Fisher {@code E_x E_{y~p(y|x)}[g^2]}.</li>
 * </ul>
 * DJL has no per-sample gradient API, so the gradients come from a batch-1 loop: a mean of squared per-sample
 * gradients cannot be recovered from a batch gradient. The model runs in evaluation mode (batch norm uses its
 * running statistics), since batch statistics of a single sample are meaningless. Parameters without a gradient
 * (batch-norm running statistics) get a zero Fisher so the file carries every tensor name of the checkpoint.
 *
 * <p>The result is written beside the checkpoint as {@code <stem>.fisher.safetensors} with the checkpoint's tensor
 * names, atomically, and metadata recording N, the mode, the seed and the data's and checkpoint's SHA-256, so an
 * existing file can be reused exactly when it still describes the same checkpoint and settings.
 */
public final class FisherEstimator {

    /** The file-name suffix of a Fisher statistic written beside a checkpoint. */
    public static final String SUFFIX = ".fisher.safetensors";
    /** The {@code kiln.format} of a Fisher file. */
    public static final String FORMAT = "fisher-v1";
    /** Metadata keys. */
    public static final String KEY_SAMPLES = "kiln.fisher.samples";
    public static final String KEY_MODE = "kiln.fisher.mode";
    public static final String KEY_SEED = "kiln.fisher.seed";
    public static final String KEY_DATA = "kiln.fisher.data.sha256";
    public static final String KEY_CHECKPOINT = "kiln.fisher.checkpoint.sha256";

    /** Which label the log-likelihood is differentiated at. */
    public enum Mode {
        /** The dataset's own label ("empirical Fisher"). */
        EMPIRICAL,
        /** A label sampled from the model's predictive distribution ("true Fisher", one sample per input). */
        TRUE;

        /** The name used in poms and metadata. */
        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }

        /** Parses {@code empirical} or {@code true} (case-insensitive); a null or blank value is the default. */
        public static Mode parse(String text) {
            if (text == null || text.isBlank()) {
                return EMPIRICAL;
            }
            for (Mode m : values()) {
                if (m.id().equals(text.trim().toLowerCase(Locale.ROOT))) {
                    return m;
                }
            }
            throw new KilnException("Fisher mode '" + text + "' is unknown; use 'empirical' (the dataset's labels) or"
                    + " 'true' (labels sampled from the model)");
        }
    }

    /**
     * How to estimate.
     *
     * @param samples the number of samples N (at least 1; capped at the dataset's size)
     * @param mode which labels to use
     * @param seed chooses the samples and, in {@link Mode#TRUE}, the sampled labels
     */
    public record Settings(int samples, Mode mode, long seed) {
        /** The default number of samples, fusion_bench's {@code num_fisher_examples}. */
        public static final int DEFAULT_SAMPLES = 256;

        public Settings {
            if (samples < 1) {
                throw new KilnException("Fisher samples must be at least 1, got " + samples);
            }
            if (mode == null) {
                mode = Mode.EMPIRICAL;
            }
        }

        /** 256 samples, empirical, seed 42. */
        public static Settings defaults() {
            return new Settings(DEFAULT_SAMPLES, Mode.EMPIRICAL, 42L);
        }
    }

    private FisherEstimator() {
    }

    /** Where the Fisher of {@code checkpoint} lives: {@code <stem>.fisher.safetensors} beside it. */
    public static Path fisherFile(Path checkpoint) {
        if (Files.isDirectory(checkpoint)) {
            return checkpoint.resolve("model" + SUFFIX);
        }
        String name = checkpoint.getFileName().toString();
        String stem = name;
        for (String ending : new String[] {".safetensors.index.json", ".safetensors"}) {
            if (name.endsWith(ending)) {
                stem = name.substring(0, name.length() - ending.length());
                break;
            }
        }
        return checkpoint.resolveSibling(stem + SUFFIX);
    }

    /**
     * The diagonal Fisher of an initialised {@code model} on {@code data} (already in the model's input space, i.e.
     * normalised as in training), one float32 array per parameter by stable name, attached to {@code manager}.
     *
     * @throws KilnException when the data's sample shape or class count does not fit the model
     */
    public static Map<String, NDArray> estimate(KilnModel model, ImageDataset data, Settings settings,
            NDManager manager) {
        if (!data.sampleShape().equals(model.sampleShape())) {
            throw new KilnException("Fisher: dataset " + data.source() + " has samples of shape " + data.sampleShape()
                    + " but model '" + model.id() + "' takes " + model.sampleShape());
        }
        if (data.numClasses() != model.numClasses()) {
            throw new KilnException("Fisher: dataset " + data.source() + " has " + data.numClasses()
                    + " classes but model '" + model.id() + "' has " + model.numClasses() + " outputs");
        }
        if (data.size() == 0) {
            throw new KilnException("Fisher: dataset " + data.source() + " has no samples");
        }
        int n = Math.min(settings.samples(), data.size());
        int classes = model.numClasses();
        int[] order = ImageDataset.permutation(data.size(), settings.seed());
        SplittableRandom labelRandom = new SplittableRandom(settings.seed() ^ 0x5DEECE66DL);
        Map<String, Parameter> params = model.parameters();
        Map<String, NDArray> sums = new LinkedHashMap<>();
        for (Map.Entry<String, Parameter> e : params.entrySet()) {
            NDArray p = e.getValue().getArray();
            NDArray zero = manager.zeros(p.getShape(), DataType.FLOAT32, p.getDevice());
            zero.setName(e.getKey());
            sums.put(e.getKey(), zero);
        }
        zeroGradients(params);
        Engine engine = manager.getEngine();
        int[] labels = data.labels();
        for (int i = 0; i < n; i++) {
            try (NDManager scope = manager.newSubManager()) {
                ParameterStore store = new ParameterStore(scope, false);
                NDList batch = data.batch(scope, order, i, 1);
                NDArray x = batch.get(0);
                try (GradientCollector collector = engine.newGradientCollector()) {
                    NDArray logProbs = model.forward(store, x, false).logSoftmax(1);
                    int y = settings.mode() == Mode.EMPIRICAL ? labels[order[i]]
                            : sample(logProbs.exp().toFloatArray(), labelRandom);
                    float[] oneHot = new float[classes];
                    oneHot[y] = 1f;
                    NDArray target = scope.create(oneHot, new Shape(1, classes)).toDevice(logProbs.getDevice(), false);
                    // The sign of the log-likelihood does not matter once squared; backward from log p(y|x).
                    collector.backward(logProbs.mul(target).sum());
                }
                for (Map.Entry<String, Parameter> e : params.entrySet()) {
                    NDArray array = e.getValue().getArray();
                    if (!e.getValue().requiresGradient() || !array.hasGradient()) {
                        continue;
                    }
                    NDArray g = array.getGradient();
                    g.attach(scope);
                    sums.get(e.getKey()).addi(g.toType(DataType.FLOAT32, false).square());
                    JniUtils.zeroGrad((PtNDArray) array);
                }
            }
        }
        for (NDArray s : sums.values()) {
            s.divi((float) n);
        }
        return sums;
    }

    /** Draws a class from probabilities on the host: K scalars per sample, not a per-element loop. */
    private static int sample(float[] probs, SplittableRandom random) {
        double u = random.nextDouble();
        double total = 0;
        for (float p : probs) {
            total += p;
        }
        double cumulative = 0;
        for (int k = 0; k < probs.length; k++) {
            cumulative += probs[k] / total;
            if (u < cumulative) {
                return k;
            }
        }
        return probs.length - 1;
    }

    private static void zeroGradients(Map<String, Parameter> params) {
        for (Parameter p : params.values()) {
            // Gradients accumulate in the PyTorch engine until zeroed; a leftover would leak into the first sample.
            if (p.requiresGradient() && p.getArray().hasGradient()) {
                JniUtils.zeroGrad((PtNDArray) p.getArray());
            }
        }
    }

    /**
     * Loads the classifier {@code checkpoint} (rebuilding its zoo model from the metadata), normalises {@code data}
     * as the checkpoint records, estimates its Fisher and writes it atomically to {@code output}.
     *
     * @param data raw (unnormalised) samples, e.g. the training split of the dataset the model was trained on
     * @return the metadata written
     */
    public static Map<String, String> compute(Path checkpoint, ImageDataset data, Settings settings, Path output,
            NDManager manager) {
        try (NDManager scope = manager.newSubManager()) {
            CheckpointModels.Loaded loaded = CheckpointModels.load(checkpoint, scope);
            ImageDataset input = data;
            if (loaded.normalization() != null) {
                if (data.normalization() == null) {
                    input = data.normalized(loaded.normalization());
                } else if (!data.normalization().equals(loaded.normalization())) {
                    throw new KilnException("Fisher: dataset " + data.source() + " is normalised with "
                            + data.normalization() + " but checkpoint " + checkpoint + " was trained with "
                            + loaded.normalization());
                }
            }
            Map<String, NDArray> fisher;
            try {
                fisher = estimate(loaded.model(), input, settings, scope);
            } catch (KilnException e) {
                throw new KilnException("checkpoint " + checkpoint + ": " + e.getMessage(), e);
            }
            Map<String, String> meta = metadata(checkpoint, data, settings, Math.min(settings.samples(),
                    data.size()));
            SafetensorsWriter.save(output, meta, fisher);
            return meta;
        }
    }

    /**
     * Computes the Fisher into {@code output} unless a file there already describes this checkpoint, data and
     * settings; returns whether it computed.
     */
    public static boolean ensure(Path checkpoint, ImageDataset data, Settings settings, Path output,
            NDManager manager) {
        if (isUpToDate(output, checkpoint, data, settings)) {
            return false;
        }
        compute(checkpoint, data, settings, output, manager);
        return true;
    }

    /** Whether {@code fisherFile} exists and its metadata matches the checkpoint's content, the data and settings. */
    public static boolean isUpToDate(Path fisherFile, Path checkpoint, ImageDataset data, Settings settings) {
        if (!Files.isRegularFile(fisherFile) || !Files.isRegularFile(checkpoint)) {
            return false;
        }
        Map<String, String> existing;
        try (SafetensorsReader reader = SafetensorsReader.open(fisherFile)) {
            existing = reader.metadata();
        } catch (KilnException e) {
            return false;
        }
        Map<String, String> want = metadata(checkpoint, data, settings, Math.min(settings.samples(), data.size()));
        for (Map.Entry<String, String> e : want.entrySet()) {
            if (existing == null || !e.getValue().equals(existing.get(e.getKey()))) {
                return false;
            }
        }
        return true;
    }

    private static Map<String, String> metadata(Path checkpoint, ImageDataset data, Settings settings, int used) {
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        meta.put("kiln.format", FORMAT);
        meta.put(KEY_SAMPLES, Integer.toString(used));
        meta.put(KEY_MODE, settings.mode().id());
        meta.put(KEY_SEED, Long.toString(settings.seed()));
        meta.put(KEY_DATA, data.sha256() == null ? "unknown" : data.sha256());
        meta.put(KEY_CHECKPOINT, Checksums.sha256(checkpoint));
        return meta;
    }
}
