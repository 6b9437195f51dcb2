package dev.kiln.benchmarks.merge;

import dev.kiln.benchmarks.Machine;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.core.fisher.FisherEstimator;
import dev.kiln.core.merge.MergeSpec;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.augment.Augmentation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Model-merging quality on Fashion-MNIST in the style of FusionBench: one base {@code cnn} is trained, five models are
 * fine-tuned from it with different augmentation, seed and learning rate, and every merge method is run through
 * {@code MergePipeline} on the saved checkpoints and scored on the test split.
 *
 * <p>Everything that is chosen (the "best single" model, the greedy soup's ingredients, each method's lambda and
 * density) is chosen on a validation split carved out of the training data; the test split is only ever used to
 * report. Usage:
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.merge.MergeQuality [--data data/full/fashion-mnist]
 *     [--train-size 6000] [--base-epochs 4] [--finetune-epochs 3] [--work /tmp/kiln-merge-quality]
 *     [--out docs/results/merge-quality.md] [--command "..."]
 * </pre>
 */
public final class MergeQuality {

    /** One fine-tuning recipe. */
    record FineTune(String augmentation, long seed, double learningRate) {
        String label() {
            return augmentation + ", seed " + seed + ", lr " + learningRate;
        }
    }

    /** A scored checkpoint. */
    record Scored(Path file, String label, double validation, double test) {
    }

    /** One table row; NaN accuracies mean not run. */
    record Row(String method, double test, double validation, String settings) {
    }

    static final List<FineTune> FINE_TUNES = List.of(
            new FineTune("none", 101, 0.02),
            new FineTune("mixup", 102, 0.01),
            new FineTune("cutmix", 103, 0.03),
            new FineTune("fmix", 104, 0.02),
            new FineTune("none", 105, 0.04));

    private final Path work;
    private final ImageDataset train;
    private final ImageDataset validation;
    private final ImageDataset test;
    private final int batchSize = 64;

    MergeQuality(Path work, ImageDataset train, ImageDataset validation, ImageDataset test) {
        this.work = work;
        this.train = train;
        this.validation = validation;
        this.test = test;
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> options = BenchSupport.parse(args);
        FashionRuns.Splits splits = FashionRuns.open(options, 6000, 11);
        Path data = splits.data();
        int baseEpochs = Integer.parseInt(options.getOrDefault("base-epochs", "4"));
        int tuneEpochs = Integer.parseInt(options.getOrDefault("finetune-epochs", "3"));
        Path work = Path.of(options.getOrDefault("work", "/tmp/kiln-merge-quality"));
        Path out = Path.of(options.getOrDefault("out", "docs/results/merge-quality.md"));
        String command = options.getOrDefault("command", "(not given)");

        // One normalisation for every model and every merge, so merged weights see the inputs their parts saw.
        Normalization stats = splits.train().computeNormalization();
        MergeQuality q = new MergeQuality(work, splits.train().normalized(stats),
                splits.validation().normalized(stats), splits.test().normalized(stats));
        Files.createDirectories(work);
        long started = System.nanoTime();
        Page page = new Page(out, command, data, q, baseEpochs, tuneEpochs);
        q.run(page, baseEpochs, tuneEpochs);
        page.minutes = (System.nanoTime() - started) / 60e9;
        page.write();
    }

    /** The results page, rewritten after every step so that an interrupted run leaves what it measured. */
    static final class Page {
        final Path out;
        final String command;
        final Path data;
        final MergeQuality q;
        final int baseEpochs;
        final int tuneEpochs;
        Scored base;
        final List<Scored> models = new ArrayList<>();
        final Map<String, Row> rows = new LinkedHashMap<>();
        double minutes = Double.NaN;

        Page(Path out, String command, Path data, MergeQuality q, int baseEpochs, int tuneEpochs) {
            this.out = out;
            this.command = command;
            this.data = data;
            this.q = q;
            this.baseEpochs = baseEpochs;
            this.tuneEpochs = tuneEpochs;
            for (String m : List.of("best single model (by validation)", "uniform soup (linear)", "greedy soup",
                    "task-arithmetic", "ties", "dare", "pcb", "fisher")) {
                rows.put(m, new Row(m, Double.NaN, Double.NaN, "not run (time)"));
            }
        }

        void write() {
            StringBuilder md = new StringBuilder();
            md.append("# Merge quality: Fashion-MNIST, five fine-tunes of one cnn\n\n");
            md.append(String.format(Locale.ROOT, "Data: `%s`; a seeded %d-image subset of its training set, split"
                    + " 90/10 into training (%d) and validation (%d) images; scored on the %d-image test set. One"
                    + " input normalisation (training-part mean/std) for every model. Model: zoo `cnn`, default"
                    + " parameters (2 conv-bn-relu-maxpool stages of 32/64 filters, hidden 128; batch-norm running"
                    + " statistics are merged like every other tensor). Base: %d epochs, SGD momentum 0.9, lr 0.05,"
                    + " cosine, seed 1, no augmentation. Five fine-tunes start from the base weights"
                    + " (`TrainingRun.startingFrom`) for %d epochs each (cosine from their lr, batch %d) and differ"
                    + " in augmentation, seed and learning rate. Every merge runs through `MergePipeline` on the"
                    + " saved safetensors checkpoints with the method created from the registry. Everything chosen"
                    + " (the best single model, the greedy soup's ingredients, each method's lambda/density/ratio"
                    + " from the small grid shown) is chosen on the validation split; the test split is only"
                    + " reported.%n%n", data, q.train.size() + q.validation.size(), q.train.size(),
                    q.validation.size(), q.test.size(), baseEpochs, tuneEpochs, q.batchSize));
            md.append("## Ingredients\n\n| model | validation accuracy | test accuracy |\n|---|---:|---:|\n");
            if (base != null) {
                md.append(String.format(Locale.ROOT, "| base (pre-trained) | %.2f%% | %.2f%% |%n",
                        100 * base.validation(), 100 * base.test()));
            }
            for (Scored s : models) {
                md.append(String.format(Locale.ROOT, "| %s | %.2f%% | %.2f%% |%n", s.label(), 100 * s.validation(),
                        100 * s.test()));
            }
            md.append("\n## Merged (FusionBench style)\n\n| method | test accuracy | validation accuracy | settings"
                    + " (chosen on validation) |\n|---|---:|---:|---|\n");
            for (Row r : rows.values()) {
                if (Double.isNaN(r.test())) {
                    md.append(String.format(Locale.ROOT, "| %s | | | %s |%n", r.method(), r.settings()));
                } else {
                    md.append(String.format(Locale.ROOT, "| %s | %.2f%% | %.2f%% | %s |%n", r.method(),
                            100 * r.test(), 100 * r.validation(), r.settings()));
                }
            }
            md.append("\n");
            if (!Double.isNaN(minutes)) {
                md.append(String.format(Locale.ROOT, "Whole run: %.1f minutes.%n%n", minutes));
            }
            md.append("Command: `").append(command).append("`\n\n");
            md.append("Machine: ").append(BenchSupport.machine()).append("; 1 intra-op thread for training. Shared"
                    + " with other engineers' builds (load average ").append(Machine.loadAverage())
                    .append(" when written); accuracies do not depend on the sharing. Written ")
                    .append(Instant.now()).append(".\n");
            Machine.writePage(out, md.toString());
        }
    }

    void run(Page page, int baseEpochs, int tuneEpochs) {
        Registry registry = Registry.discover(MergeQuality.class.getClassLoader());
        Path baseFile = work.resolve("base.safetensors");
        TrainingConfig baseConfig = TrainingConfig.builder("cnn").epochs(baseEpochs).batchSize(batchSize)
                .learningRate(0.05).warmupSteps(train.batchCount(batchSize)).seed(1).threads(1).build();
        train(baseConfig, null, baseFile, "base");
        page.base = score(baseFile, "base");
        page.write();

        for (int i = 0; i < FINE_TUNES.size(); i++) {
            FineTune f = FINE_TUNES.get(i);
            List<Augmentation> augmentations = f.augmentation().equals("none") ? List.of()
                    : List.of(registry.create(Kind.AUGMENT, Augmentation.class, f.augmentation(), Map.of()));
            TrainingConfig config = TrainingConfig.builder("cnn").epochs(tuneEpochs).batchSize(batchSize)
                    .learningRate(f.learningRate()).warmupSteps(10).seed(f.seed()).threads(1)
                    .augmentations(augmentations).build();
            Path file = work.resolve("finetune-" + (i + 1) + ".safetensors");
            train(config, baseFile, file, f.label());
            page.models.add(score(file, "fine-tune " + (i + 1) + " (" + f.label() + ")"));
            page.write();
        }
        List<Scored> models = page.models;
        List<Path> files = models.stream().map(Scored::file).toList();

        Scored best = models.stream().max(Comparator.comparingDouble(Scored::validation)).orElseThrow();
        page.rows.put("best single model (by validation)", new Row("best single model (by validation)",
                best.test(), best.validation(), best.label()));
        Scored uniform = score(merge("linear", Map.of(), null, files, "uniform"), "uniform");
        page.rows.put("uniform soup (linear)", new Row("uniform soup (linear)", uniform.test(), uniform.validation(),
                "all 5, equal weights"));
        page.write();

        page.rows.put("greedy soup", greedySoup(models));
        page.write();

        List<Map<String, String>> taGrid = new ArrayList<>();
        for (String l : List.of("0.1", "0.2", "0.3", "0.5", "0.8")) {
            taGrid.add(Map.of("lambda", l));
        }
        page.rows.put("task-arithmetic", search("task-arithmetic", taGrid, baseFile, files));
        page.write();

        List<Map<String, String>> tiesGrid = new ArrayList<>();
        for (String d : List.of("0.2", "0.5", "1.0")) {
            for (String l : List.of("1.0", "1.5")) {
                tiesGrid.add(Map.of("density", d, "lambda", l));
            }
        }
        page.rows.put("ties", search("ties", tiesGrid, baseFile, files));
        page.write();

        List<Map<String, String>> dareGrid = new ArrayList<>();
        for (String d : List.of("0.3", "0.7")) {
            for (String l : List.of("0.2", "0.3", "0.5")) {
                dareGrid.add(Map.of("density", d, "lambda", l));
            }
        }
        page.rows.put("dare", search("dare", dareGrid, baseFile, files));
        page.write();

        List<Map<String, String>> pcbGrid = new ArrayList<>();
        for (String r : List.of("0.1", "0.3", "0.5")) {
            for (String l : List.of("1.0", "1.5")) {
                pcbGrid.add(Map.of("ratio", r, "lambda", l));
            }
        }
        page.rows.put("pcb", search("pcb", pcbGrid, baseFile, files));
        page.write();

        // Fisher merging: each fine-tune's empirical diagonal Fisher on 1024 of the training images, then the
        // Fisher-weighted average of the five through the pipeline (no base)
        List<MergeSpec.ModelInput> withFisher = new ArrayList<>();
        for (Path file : files) {
            Path fisher = FisherEstimator.fisherFile(file);
            try (NDManager manager = NDManager.newBaseManager()) {
                FisherEstimator.compute(file, train, new FisherEstimator.Settings(1024,
                        FisherEstimator.Mode.EMPIRICAL, 7), fisher, manager);
            }
            withFisher.add(MergeSpec.ModelInput.of(file).withStatistic(fisher));
        }
        double bestValidation = -1;
        Path bestFile = null;
        String bestEpsilon = null;
        StringBuilder tried = new StringBuilder();
        for (String epsilon : List.of("1e-8", "1e-6", "1e-4")) {
            Path merged = work.resolve("merged").resolve("fisher-" + epsilon + ".safetensors");
            BenchSupport.mergeInputs("fisher", Map.of("epsilon", epsilon), null, withFisher, merged, 2, 1L);
            double accuracy = accuracy(merged, validation);
            tried.append(tried.length() == 0 ? "" : "; ").append("epsilon=").append(epsilon)
                    .append(String.format(Locale.ROOT, ": %.1f%%", 100 * accuracy));
            if (accuracy > bestValidation) {
                bestValidation = accuracy;
                bestFile = merged;
                bestEpsilon = epsilon;
            }
        }
        page.rows.put("fisher", new Row("fisher", accuracy(bestFile, test), bestValidation, "**epsilon="
                + bestEpsilon + "** (empirical Fisher on 1024 training images per model; validation grid: " + tried
                + ")"));
        page.write();
    }

    /**
     * Greedy soup (Wortsman et al. 2022): ingredients in descending validation accuracy, starting from the best; each
     * next one stays in the uniform average when validation accuracy does not drop.
     */
    Row greedySoup(List<Scored> models) {
        List<Scored> sorted = new ArrayList<>(models);
        sorted.sort(Comparator.comparingDouble(Scored::validation).reversed());
        List<Path> soup = new ArrayList<>(List.of(sorted.get(0).file()));
        List<Integer> kept = new ArrayList<>(List.of(models.indexOf(sorted.get(0)) + 1));
        double current = sorted.get(0).validation();
        Path currentFile = sorted.get(0).file();
        for (int i = 1; i < sorted.size(); i++) {
            List<Path> candidate = new ArrayList<>(soup);
            candidate.add(sorted.get(i).file());
            Path merged = merge("linear", Map.of(), null, candidate, "greedy-" + candidate.size() + "-" + i);
            double accuracy = accuracy(merged, validation);
            System.out.printf(Locale.ROOT, "greedy soup: adding fine-tune %d gives validation %.4f (current %.4f)%n",
                    models.indexOf(sorted.get(i)) + 1, accuracy, current);
            if (accuracy >= current) {
                soup = candidate;
                current = accuracy;
                currentFile = merged;
                kept.add(models.indexOf(sorted.get(i)) + 1);
            }
        }
        return new Row("greedy soup", accuracy(currentFile, test), current, "fine-tunes " + kept
                + " (added in validation order when validation accuracy did not drop)");
    }

    /** Runs {@code method} over {@code grid} on validation, reports the best setting's test accuracy. */
    Row search(String method, List<Map<String, String>> grid, Path base, List<Path> files) {
        double bestValidation = -1;
        Path bestFile = null;
        Map<String, String> bestParams = null;
        StringBuilder tried = new StringBuilder();
        for (Map<String, String> params : grid) {
            String tag = method + "-" + String.join("-", new java.util.TreeMap<>(params).values());
            Path merged = merge(method, params, base, files, tag);
            double accuracy = accuracy(merged, validation);
            tried.append(tried.length() == 0 ? "" : "; ").append(describe(params))
                    .append(String.format(Locale.ROOT, ": %.1f%%", 100 * accuracy));
            System.out.printf(Locale.ROOT, "%s %s: validation %.4f%n", method, params, accuracy);
            if (accuracy > bestValidation) {
                bestValidation = accuracy;
                bestFile = merged;
                bestParams = params;
            }
        }
        return new Row(method, accuracy(bestFile, test), bestValidation, "**" + describe(bestParams)
                + "** (validation grid: " + tried + ")");
    }

    private static String describe(Map<String, String> params) {
        StringBuilder s = new StringBuilder();
        new java.util.TreeMap<>(params).forEach((k, v) -> s.append(s.length() == 0 ? "" : " ").append(k).append('=')
                .append(v));
        return s.toString();
    }

    Path merge(String method, Map<String, String> params, Path base, List<Path> files, String tag) {
        Path out = work.resolve("merged").resolve(tag + ".safetensors");
        BenchSupport.merge(method, params, base, files, out, 2, 1L);
        return out;
    }

    private void train(TrainingConfig config, Path startFrom, Path file, String label) {
        FashionRuns.train(config, train, validation,
                startFrom == null ? null : manager -> FashionRuns.readAll(startFrom, manager), file, label);
    }

    Scored score(Path file, String label) {
        return new Scored(file, label, accuracy(file, validation), accuracy(file, test));
    }

    /** Accuracy of the checkpoint's weights in a fresh cnn, in evaluation mode (running batch-norm statistics). */
    double accuracy(Path file, ImageDataset data) {
        try (NDManager manager = NDManager.newBaseManager()) {
            return FashionRuns.accuracy(FashionRuns.readAll(file, manager), manager, data)[0];
        }
    }
}
