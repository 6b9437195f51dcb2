package dev.kiln.benchmarks.compress;

import dev.kiln.benchmarks.Machine;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.ParameterStore;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.compress.SparseSoup;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.compress.Compressor;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Sparse model soups on the embedded Fashion-MNIST: a {@code cnn} is trained, then for each target sparsity
 * {@link SparseSoup} prunes it by magnitude, fine-tunes {@code ingredients} copies under the shared mask and averages
 * them, for {@code rounds} rounds. The soup is compared with the best single ingredient of the final round (a model
 * pruned and fine-tuned exactly like the soup's parts) and with one-shot magnitude pruning without fine-tuning.
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.compress.SparseSoups [--data data/fashion-mnist-mini]
 *     [--epochs 3] [--ingredients 3] [--finetune-epochs 2] [--targets 0.5:1,0.8:2] [--out docs/results/sparse-soups.md]
 *     [--command "..."]
 * </pre>
 * {@code --targets} lists sparsity:rounds pairs.
 */
public final class SparseSoups {

    private SparseSoups() {
    }

    /** One target's outcome. */
    /** One target; accuracies of the final round's ingredients and of the soup on the test split. */
    record Target(double sparsity, int rounds, double oneShot, SparseSoup.Result result, double soupSparsity,
            double overallSparsity, double seconds, List<Double> ingredientTests, double soupTest) {
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> o = CompressBenchSupport.parse(args);
        Path data = Path.of(o.getOrDefault("data", "data/fashion-mnist-mini"));
        int epochs = Integer.parseInt(o.getOrDefault("epochs", "3"));
        int ingredients = Integer.parseInt(o.getOrDefault("ingredients", "3"));
        int tuneEpochs = Integer.parseInt(o.getOrDefault("finetune-epochs", "2"));
        String targets = o.getOrDefault("targets", "0.5:1,0.8:2");
        Path out = Path.of(o.getOrDefault("out", "docs/results/sparse-soups.md"));
        String command = o.getOrDefault("command", "(not given)");
        Engine.getInstance();
        JniUtils.setNumThreads(1);
        JniUtils.setNumInteropThreads(1);

        DataSource source = Datasets.open(data);
        if (!(source instanceof LabeledData labeled) || labeled.test() == null) {
            throw new KilnException("dataset " + data + " must be an IDX folder with t10k test files");
        }
        // A validation split carved from the training data: the soup's rounds and the choice of the best single
        // ingredient are scored there; the test split only reports.
        ImageDataset.Split split = labeled.train().split(0.1, 5);
        ImageDataset train = split.train();
        ImageDataset validation = split.validation();
        ImageDataset test = labeled.test();
        ImageDataset testReady = test.normalized(train.computeNormalization());
        Registry registry = Registry.discover(SparseSoups.class.getClassLoader());
        long started = System.nanoTime();
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingConfig baseConfig = TrainingConfig.builder("cnn").epochs(epochs).batchSize(64).learningRate(0.05)
                    .warmupSteps(train.batchCount(64) / 2).seed(1).threads(1).build();
            TrainingResult base = new TrainingRun(baseConfig, train, validation, null).run(manager);
            Map<String, NDArray> start = new LinkedHashMap<>();
            base.model().parameters().forEach((name, p) -> start.put(name, p.getArray()));
            double baseAccuracy = testAccuracy(start, train, testReady, manager);
            System.out.printf(Locale.ROOT, "base cnn: test accuracy %.4f%n", baseAccuracy);

            TrainingConfig tune = TrainingConfig.builder("cnn").epochs(tuneEpochs).batchSize(64).learningRate(0.01)
                    .seed(7).threads(1).build();
            List<Target> done = new ArrayList<>();
            for (String pair : targets.split(",")) {
                String[] parts = pair.split(":");
                double sparsity = Double.parseDouble(parts[0]);
                int rounds = Integer.parseInt(parts[1]);
                long t0 = System.nanoTime();
                double oneShot = oneShotAccuracy(registry, start, sparsity, train, testReady, manager);
                try (NDManager scope = manager.newSubManager()) {
                    List<Double> ingredientTests = new ArrayList<>();
                    SparseSoup.Listener scoreOnTest = new SparseSoup.Listener() {
                        @Override
                        public void onIngredient(int round, int ingredient, double accuracy) {
                        }

                        @Override
                        public void onIngredientModel(int round, int ingredient, KilnModel model) {
                            if (round == rounds) {
                                ingredientTests.add(TrainingRun.evaluate(model, testReady, scope,
                                        new ParameterStore(scope, false), 256)[1]);
                            }
                        }
                    };
                    SparseSoup.Result r = new SparseSoup(registry, new SparseSoup.Settings(sparsity, false,
                            ingredients, rounds, tune)).run(start, train, validation, scope, scoreOnTest);
                    double soupTest = testAccuracy(r.parameters(), train, testReady, scope);
                    double[] sp = sparsity(r.parameters());
                    done.add(new Target(sparsity, rounds, oneShot, r, sp[0], sp[1], (System.nanoTime() - t0) / 1e9,
                            ingredientTests, soupTest));
                    System.out.printf(Locale.ROOT, "target %.2f: rounds %s, soup sparsity %.6f%n", sparsity,
                            r.rounds(), sp[0]);
                }
                write(out, command, data, train, test, epochs, baseAccuracy, ingredients, tuneEpochs, done,
                        (System.nanoTime() - started) / 60e9);
            }
        }
    }

    /**
     * Zero fraction over the prunable tensors (the ones SparseSoup masks) and over every floating tensor, counted on
     * the arrays themselves rather than taken from the masks.
     */
    static double[] sparsity(Map<String, NDArray> params) {
        double zerosPrunable = 0;
        double sizePrunable = 0;
        double zerosAll = 0;
        double sizeAll = 0;
        for (Map.Entry<String, NDArray> e : params.entrySet()) {
            NDArray a = e.getValue();
            if (!a.getDataType().isFloating()) {
                continue;
            }
            long zeros = a.size() - a.countNonzero().getLong();
            zerosAll += zeros;
            sizeAll += a.size();
            if (CompressPipeline.isCompressible(e.getKey(), a.getShape())) {
                zerosPrunable += zeros;
                sizePrunable += a.size();
            }
        }
        return new double[] {zerosPrunable / sizePrunable, zerosAll / sizeAll};
    }

    /** Accuracy on {@code test} (already normalised) after per-tensor magnitude pruning of the prunable tensors, without any fine-tuning. */
    static double oneShotAccuracy(Registry registry, Map<String, NDArray> start, double sparsity, ImageDataset train,
            ImageDataset test, NDManager manager) {
        Compressor magnitude = registry.create(Kind.COMPRESS, Compressor.class, "magnitude",
                Map.of("sparsity", Double.toString(sparsity)));
        try (NDManager scope = manager.newSubManager()) {
            Map<String, NDArray> pruned = new LinkedHashMap<>();
            start.forEach((name, w) -> pruned.put(name, w.getDataType().isFloating()
                    && CompressPipeline.isCompressible(name, w.getShape())
                    ? magnitude.compress(name, w).reconstruction() : w));
            return testAccuracy(pruned, train, test, scope);
        }
    }

    /** Accuracy on {@code ready} (normalised like {@code train}) of a cnn holding {@code params}. */
    static double testAccuracy(Map<String, NDArray> params, ImageDataset train, ImageDataset ready,
            NDManager manager) {
        try (NDManager scope = manager.newSubManager()) {
            KilnModel model = ModelZoo.build("cnn", Map.of(), train.sampleShape(), train.numClasses())
                    .initialize(scope, 0);
            model.loadParameters(params);
            return TrainingRun.evaluate(model, ready, scope, new ParameterStore(scope, false), 256)[1];
        }
    }

    static void write(Path out, String command, Path data, ImageDataset train, ImageDataset test, int epochs,
            double baseAccuracy, int ingredients, int tuneEpochs, List<Target> targets, double minutes) {
        StringBuilder md = new StringBuilder();
        md.append("# Sparse model soups vs the best single pruned model (Fashion-MNIST)\n\n");
        md.append(String.format(Locale.ROOT, "Data: `%s` (%d training images after a 10%% validation split, %d test images). Base: zoo"
                + " `cnn`, %d epochs (SGD momentum 0.9, lr 0.05, warm-up + cosine, batch 64, seed 1): test accuracy"
                + " **%.2f%%**."
                + " `SparseSoup` (Zimmer et al., ICLR 2024), per-tensor magnitude pruning of every prunable tensor"
                + " (conv and linear weights; biases and batch-norm never pruned), %d ingredients per round, each"
                + " fine-tuned %d epochs (SGD, lr 0.01 cosine, seeds differ per ingredient so batch orders"
                + " differ) with the mask re-applied after every step; round r of R prunes to sparsity x r / R."
                + " Batch-norm running statistics are averaged like the weights (no recalibration pass).%n%n",
                data, train.size(), test.size(), epochs, 100 * baseAccuracy, ingredients, tuneEpochs));
        md.append("The *best single* model is the ingredient of the final round with the best **validation**"
                + " accuracy (a split of the training data, as are the soup's per-round scores): a model pruned and"
                + " fine-tuned exactly like the soup's parts. Test accuracies below are only reported, never used"
                + " to choose. *One-shot* is the base pruned to the target with no fine-tuning. *Soup sparsity*"
                + " counts exact zeros in the soup's prunable tensors; *overall* counts them over every floating"
                + " tensor, biases and batch-norm included.\n\n");
        md.append("| target sparsity | rounds | one-shot pruned (test) | ingredients, final round (validation / test)"
                + " | best single by validation (test) | soup (test) | soup - best single | soup sparsity (prunable)"
                + " | overall | minutes |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
        for (Target t : targets) {
            List<SparseSoup.Round> rounds = t.result().rounds();
            SparseSoup.Round last = rounds.get(rounds.size() - 1);
            int bestIndex = 0;
            for (int i = 1; i < last.ingredientAccuracies().size(); i++) {
                if (last.ingredientAccuracies().get(i) > last.ingredientAccuracies().get(bestIndex)) {
                    bestIndex = i;
                }
            }
            double best = t.ingredientTests().get(bestIndex);
            StringBuilder ing = new StringBuilder();
            for (int i = 0; i < last.ingredientAccuracies().size(); i++) {
                ing.append(ing.length() == 0 ? "" : ", ").append(String.format(Locale.ROOT, "%.2f / %.2f%%",
                        100 * last.ingredientAccuracies().get(i), 100 * t.ingredientTests().get(i)));
            }
            md.append(String.format(Locale.ROOT, "| %.0f%% | %d | %.2f%% | %s | %.2f%% | **%.2f%%** | %+.2f pp |"
                    + " %.4f%% | %.4f%% | %.1f |%n", 100 * t.sparsity(), t.rounds(), 100 * t.oneShot(), ing,
                    100 * best, 100 * t.soupTest(), 100 * (t.soupTest() - best),
                    100 * t.soupSparsity(), 100 * t.overallSparsity(), t.seconds() / 60));
        }
        md.append("\nPer round (validation accuracies, as SparseSoup scores them):\n\n| target | round | sparsity |"
                + " ingredient accuracies | soup accuracy |\n"
                + "|---:|---:|---:|---|---:|\n");
        for (Target t : targets) {
            int i = 1;
            for (SparseSoup.Round r : t.result().rounds()) {
                StringBuilder ing = new StringBuilder();
                for (double a : r.ingredientAccuracies()) {
                    ing.append(ing.length() == 0 ? "" : ", ").append(String.format(Locale.ROOT, "%.2f%%", 100 * a));
                }
                md.append(String.format(Locale.ROOT, "| %.0f%% | %d | %.0f%% | %s | %.2f%% |%n", 100 * t.sparsity(),
                        i++, 100 * r.sparsity(), ing, 100 * r.soupAccuracy()));
            }
        }
        md.append(String.format(Locale.ROOT, "%nOne seed, one run: differences under about 1 percentage point on"
                + " %d test images (1 image = 0.1 pp) are within run-to-run noise.%n%n", test.size()));
        md.append(String.format(Locale.ROOT, "Whole run: %.1f minutes.%n%n", minutes));
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(CompressBenchSupport.machine()).append(" (accuracies do not depend on the"
                + " sharing). Written ").append(Instant.now()).append(".\n");
        Machine.writePage(out, md.toString());
    }
}
