package dev.kiln.core.data;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.SplittableRandom;

/**
 * Labelled samples in memory, ready to become NDArrays: float values laid out as (N, C, H, W), integer class labels,
 * the class count and the SHA-256 of the source files, which every output derived from the data records.
 *
 * <p>Images load as values in [0, 1]; a CSV table loads as (N, F, 1, 1), so per-channel statistics are per-feature
 * statistics. Instances are immutable: shuffling, splitting and normalising return new datasets that share nothing
 * mutable with this one.
 */
public final class ImageDataset {
    private final float[] values;
    private final int[] labels;
    private final int size;
    private final int channels;
    private final int height;
    private final int width;
    private final List<String> classNames;
    private final String sha256;
    private final String source;
    private final Normalization normalization;

    /**
     * @param values sample values, {@code size * channels * height * width} floats in (N, C, H, W) order
     * @param labels class index of each sample, each in {@code [0, classNames.size())}
     * @param channels C
     * @param height H
     * @param width W
     * @param classNames one name per class; its size is the class count
     * @param sha256 hex SHA-256 of the source files
     * @param source where the data came from, for messages
     */
    public ImageDataset(float[] values, int[] labels, int channels, int height, int width, List<String> classNames,
            String sha256, String source) {
        this(values, labels, channels, height, width, classNames, sha256, source, null);
    }

    private ImageDataset(float[] values, int[] labels, int channels, int height, int width, List<String> classNames,
            String sha256, String source, Normalization normalization) {
        this.values = values;
        this.labels = labels;
        this.size = labels.length;
        this.channels = channels;
        this.height = height;
        this.width = width;
        this.classNames = List.copyOf(classNames);
        this.sha256 = sha256;
        this.source = source;
        this.normalization = normalization;
        if ((long) size * channels * height * width != values.length) {
            throw new KilnException(source + ": " + values.length + " values do not make " + size + " samples of "
                    + channels + "x" + height + "x" + width);
        }
        for (int i = 0; i < size; i++) {
            if (labels[i] < 0 || labels[i] >= classNames.size()) {
                throw new KilnException(source + ": label " + labels[i] + " of sample " + i
                        + " is out of range [0, " + classNames.size() + ")");
            }
        }
    }

    /** Number of samples N. */
    public int size() {
        return size;
    }

    public int channels() {
        return channels;
    }

    public int height() {
        return height;
    }

    public int width() {
        return width;
    }

    /** The shape of one sample, (C, H, W). */
    public Shape sampleShape() {
        return new Shape(channels, height, width);
    }

    /** Number of classes K. */
    public int numClasses() {
        return classNames.size();
    }

    public List<String> classNames() {
        return classNames;
    }

    /** Hex SHA-256 of the source files. */
    public String sha256() {
        return sha256;
    }

    /** Where the data came from (a file or folder), for messages and reports. */
    public String source() {
        return source;
    }

    /** The statistics this dataset was normalised with, or null when it holds raw values. */
    public Normalization normalization() {
        return normalization;
    }

    /** A copy of the labels. */
    public int[] labels() {
        return labels.clone();
    }

    /** A copy of the values, (N, C, H, W) order. */
    public float[] values() {
        return values.clone();
    }

    /** Number of samples of each class. */
    public int[] classCounts() {
        int[] counts = new int[numClasses()];
        for (int label : labels) {
            counts[label]++;
        }
        return counts;
    }

    /** The samples at {@code indices}, in that order (indices may repeat). */
    public ImageDataset subset(int[] indices) {
        int sampleSize = channels * height * width;
        float[] picked = new float[indices.length * sampleSize];
        int[] pickedLabels = new int[indices.length];
        for (int i = 0; i < indices.length; i++) {
            int index = indices[i];
            if (index < 0 || index >= size) {
                throw new IndexOutOfBoundsException("sample " + index + " of " + size);
            }
            System.arraycopy(values, index * sampleSize, picked, i * sampleSize, sampleSize);
            pickedLabels[i] = labels[index];
        }
        return new ImageDataset(picked, pickedLabels, channels, height, width, classNames, sha256, source,
                normalization);
    }

    /** The first {@code count} samples (or all when there are fewer). */
    public ImageDataset head(int count) {
        int n = Math.min(count, size);
        int[] indices = new int[n];
        Arrays.setAll(indices, i -> i);
        return subset(indices);
    }

    /** A seeded random permutation of {@code 0..n-1} (Fisher-Yates on a SplittableRandom). */
    public static int[] permutation(int n, long seed) {
        int[] order = new int[n];
        Arrays.setAll(order, i -> i);
        SplittableRandom random = new SplittableRandom(seed);
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        return order;
    }

    /** The samples in a seeded random order: the same seed always gives the same order. */
    public ImageDataset shuffled(long seed) {
        return subset(permutation(size, seed));
    }

    /**
     * Splits off a validation part after a seeded shuffle: {@code round(size * validationFraction)} samples go to
     * validation, the rest to training.
     */
    public Split split(double validationFraction, long seed) {
        if (!(validationFraction >= 0 && validationFraction < 1)) {
            throw new KilnException("validation fraction must be in [0, 1), got " + validationFraction);
        }
        int[] order = permutation(size, seed);
        int validation = (int) Math.round(size * validationFraction);
        return new Split(subset(Arrays.copyOfRange(order, validation, size)),
                subset(Arrays.copyOfRange(order, 0, validation)));
    }

    /** A training and a validation part. */
    public record Split(ImageDataset train, ImageDataset validation) {
    }

    /**
     * Per-channel mean and standard deviation of this dataset (call it on the training split), computed in float64
     * on NDArrays.
     */
    public Normalization computeNormalization() {
        if (size == 0) {
            throw new KilnException(source + ": cannot compute normalisation statistics of an empty dataset");
        }
        try (NDManager manager = NDManager.newBaseManager()) {
            // (C, N*H*W): PyTorch's mean takes one axis at a time in DJL.
            NDArray x = manager.create(values, new Shape(size, channels, height * width)).toType(DataType.FLOAT64,
                    false).transpose(1, 0, 2).reshape(channels, -1);
            NDArray mean = x.mean(new int[] {1}, true);
            // Population variance, as torchvision-style recipes report it.
            NDArray std = x.sub(mean).square().mean(new int[] {1}).sqrt();
            double[] means = mean.reshape(channels).toDoubleArray();
            double[] stds = std.toDoubleArray();
            float[] m = new float[channels];
            float[] s = new float[channels];
            for (int c = 0; c < channels; c++) {
                m[c] = (float) means[c];
                // A constant channel would divide by zero; leave it centred but unscaled.
                s[c] = stds[c] > 1e-12 ? (float) stds[c] : 1f;
            }
            return new Normalization(m, s);
        }
    }

    /** {@code (x - mean) / std} per channel, with statistics usually computed on the training split. */
    public ImageDataset normalized(Normalization stats) {
        if (stats.mean().length != channels) {
            throw new KilnException(source + ": normalisation has " + stats.mean().length + " channels, data has "
                    + channels);
        }
        if (normalization != null) {
            throw new KilnException(source + ": data is already normalised");
        }
        try (NDManager manager = NDManager.newBaseManager()) {
            Shape perChannel = new Shape(1, channels, 1, 1);
            NDArray x = manager.create(values, new Shape(size, channels, height, width));
            NDArray y = x.sub(manager.create(stats.mean(), perChannel)).div(manager.create(stats.std(), perChannel));
            return new ImageDataset(y.toFloatArray(), labels, channels, height, width, classNames, sha256, source,
                    stats);
        }
    }

    /**
     * Batches in the given sample order, created in {@code manager}: each is an NDList of inputs (B, C, H, W)
     * float32 and labels (B) int64. The last partial batch is kept.
     */
    public Iterator<NDList> batches(NDManager manager, int batchSize, int[] order) {
        if (batchSize <= 0) {
            throw new KilnException("batch size must be positive, got " + batchSize);
        }
        return new Iterator<>() {
            private int next;

            @Override
            public boolean hasNext() {
                return next < order.length;
            }

            @Override
            public NDList next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                int count = Math.min(batchSize, order.length - next);
                NDList batch = batch(manager, order, next, count);
                next += count;
                return batch;
            }
        };
    }

    /**
     * One batch in {@code manager}: the samples {@code order[from .. from + count)} as inputs (count, C, H, W)
     * float32 and labels (count) int64.
     */
    public NDList batch(NDManager manager, int[] order, int from, int count) {
        int sampleSize = channels * height * width;
        float[] x = new float[count * sampleSize];
        long[] y = new long[count];
        for (int i = 0; i < count; i++) {
            int index = order[from + i];
            System.arraycopy(values, index * sampleSize, x, i * sampleSize, sampleSize);
            y[i] = labels[index];
        }
        NDArray inputs = manager.create(FloatBuffer.wrap(x), new Shape(count, channels, height, width));
        return new NDList(inputs, manager.create(y));
    }

    /** Batches in stored order. */
    public Iterator<NDList> batches(NDManager manager, int batchSize) {
        int[] order = new int[size];
        Arrays.setAll(order, i -> i);
        return batches(manager, batchSize, order);
    }

    /** Number of batches of {@code batchSize}, the last partial one included. */
    public int batchCount(int batchSize) {
        return (size + batchSize - 1) / batchSize;
    }

    @Override
    public String toString() {
        return source + " (" + size + " samples of " + channels + "x" + height + "x" + width + ", " + numClasses()
                + " classes)";
    }
}
