package dev.kiln.benchmarks.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.ParameterStore;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingListener;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/** What the merge-quality runners share: the Fashion-MNIST splits, training a checkpoint, reading one back. */
final class FashionRuns {
    private FashionRuns() {
    }

    /** Raw (unnormalised) splits: a seeded subset of the training set split 90/10, and the test set. */
    record Splits(Path data, ImageDataset train, ImageDataset validation, ImageDataset test) {
    }

    /**
     * The data named by {@code --data} (default: the full set when fetched, else the embedded subset), with a
     * {@code --train-size} subset (default {@code defaultTrainSize}) drawn with {@code seed} and split with
     * {@code seed + 1}.
     */
    static Splits open(Map<String, String> options, int defaultTrainSize, long seed) {
        Path full = Path.of("data/full/fashion-mnist");
        Path data = Path.of(options.getOrDefault("data", Files.isDirectory(full) ? full.toString()
                : "data/fashion-mnist-mini"));
        int trainSize = Integer.parseInt(options.getOrDefault("train-size", Integer.toString(defaultTrainSize)));
        DataSource source = Datasets.open(data);
        if (!(source instanceof LabeledData labeled) || labeled.test() == null) {
            throw new KilnException("dataset " + data + " must be an IDX folder with t10k test files");
        }
        ImageDataset pool = labeled.train();
        if (trainSize < pool.size()) {
            pool = pool.subset(java.util.Arrays.copyOf(ImageDataset.permutation(pool.size(), seed), trainSize));
        }
        ImageDataset.Split split = pool.split(0.1, seed + 1);
        return new Splits(data, split.train(), split.validation(), labeled.test());
    }

    /** Trains {@code config} on {@code train} (from {@code start} when given) and saves the model to {@code file}. */
    static void train(TrainingConfig config, ImageDataset train, ImageDataset validation,
            java.util.function.Function<NDManager, Map<String, NDArray>> start, Path file, String label) {
        long t0 = System.nanoTime();
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingRun run = new TrainingRun(config, train, validation, new TrainingListener() {
                @Override
                public void onEpoch(EpochResult r) {
                    System.out.printf(Locale.ROOT, "%s epoch %d/%d: train loss %.4f, validation acc %.4f, %.1f s%n",
                            label, r.epoch() + 1, config.epochs(), r.trainLoss(), r.evalAccuracy(), r.seconds());
                }
            });
            if (start != null) {
                run.startingFrom(start.apply(manager));
            }
            TrainingResult result = run.run(manager);
            TrainingRun.saveModel(result.model(), result.metadata(), file);
        }
        System.out.printf(Locale.ROOT, "%s trained in %.1f s%n", label, (System.nanoTime() - t0) / 1e9);
    }

    /** Every tensor of {@code file}, in file order, in {@code manager}. */
    static Map<String, NDArray> readAll(Path file, NDManager manager) {
        Map<String, NDArray> arrays = new LinkedHashMap<>();
        try (SafetensorsReader reader = SafetensorsReader.open(file)) {
            for (String name : reader.names()) {
                arrays.put(name, reader.read(name, manager));
            }
        }
        return arrays;
    }

    /** Accuracy on each of {@code splits} of a cnn holding {@code params}, in evaluation mode (running BN stats). */
    static double[] accuracy(Map<String, NDArray> params, NDManager manager, ImageDataset... splits) {
        ImageDataset first = splits[0];
        KilnModel model = ModelZoo.build("cnn", Map.of(), first.sampleShape(), first.numClasses())
                .initialize(manager, 0);
        model.loadParameters(params);
        double[] out = new double[splits.length];
        for (int i = 0; i < splits.length; i++) {
            out[i] = TrainingRun.evaluate(model, splits[i], manager, new ParameterStore(manager, false), 256)[1];
        }
        return out;
    }
}
