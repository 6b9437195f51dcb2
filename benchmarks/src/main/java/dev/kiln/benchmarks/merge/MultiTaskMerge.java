package dev.kiln.benchmarks.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.benchmarks.Machine;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.core.fisher.FisherEstimator;
import dev.kiln.core.merge.MergeSpec;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.UnaryOperator;

/**
 * Multi-task model merging in the style of FusionBench's tables: one {@code cnn} encoder is pre-trained on
 * Fashion-MNIST, then fine-tuned separately on four tasks built from the same real images, each task with its own
 * head. The encoders (every tensor but the head {@code fc.*}) are merged; each task is then scored with the merged
 * encoder and its own fine-tuned head, and the table reports the accuracy per task and the average over tasks.
 *
 * <p>Tasks: {@code fashion} (the 10 classes as they are), {@code rotated} (images turned 90 degrees),
 * {@code inverted} (pixel intensities reversed, 255 - x) and {@code coarse} (4 super-classes: tops, bottoms and
 * dresses, footwear, bags; a 4-way head). Each method's setting is chosen on the average validation accuracy over
 * tasks (a split of the training pool); the test split is only reported. Usage:
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.merge.MultiTaskMerge [--data data/full/fashion-mnist]
 *     [--train-size 12000] [--base-epochs 3] [--finetune-epochs 2] [--work /tmp/kiln-multitask]
 *     [--out docs/results/merge-multitask.md] [--command "..."]
 * </pre>
 */
public final class MultiTaskMerge {
    private static final String HEAD = "fc.";
    private static final int BATCH = 64;

    /** Fashion-MNIST class to super-class: tops (0 2 4 6), bottoms and dresses (1 3), footwear (5 7 9), bag (8). */
    private static final int[] COARSE = {0, 1, 0, 1, 0, 2, 0, 2, 3, 2};

    /** One task: its data (normalised) and, once fine-tuned, its checkpoint and encoder-only file. */
    record Task(String name, String description, ImageDataset train, ImageDataset validation, ImageDataset test) {
    }

    /** One table row: accuracy per task on test and validation, and what was chosen. */
    record Row(String method, double[] test, double[] validation, String settings) {
        double testAverage() {
            return average(test);
        }

        double validationAverage() {
            return average(validation);
        }
    }

    private final Path work;
    private final List<Task> tasks;
    private final Map<String, Row> rows = new LinkedHashMap<>();
    private final Path out;
    private final String command;
    private final Path data;
    private final int trainSize;
    private final int baseEpochs;
    private final int tuneEpochs;
    private double minutes = Double.NaN;

    private MultiTaskMerge(Path work, List<Task> tasks, Path out, String command, Path data, int trainSize,
            int baseEpochs, int tuneEpochs) {
        this.work = work;
        this.tasks = tasks;
        this.out = out;
        this.command = command;
        this.data = data;
        this.trainSize = trainSize;
        this.baseEpochs = baseEpochs;
        this.tuneEpochs = tuneEpochs;
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> options = BenchSupport.parse(args);
        FashionRuns.Splits splits = FashionRuns.open(options, 12000, 21);
        int trainSize = splits.train().size() + splits.validation().size();
        int baseEpochs = Integer.parseInt(options.getOrDefault("base-epochs", "3"));
        int tuneEpochs = Integer.parseInt(options.getOrDefault("finetune-epochs", "2"));
        Path work = Path.of(options.getOrDefault("work", "/tmp/kiln-multitask"));
        Path out = Path.of(options.getOrDefault("out", "docs/results/merge-multitask.md"));
        String command = options.getOrDefault("command", "(not given)");
        // One input normalisation for every task and model (the original training images' mean and std), so a
        // merged encoder sees inputs on the scale each of its parts saw.
        Normalization stats = splits.train().computeNormalization();
        List<Task> tasks = new ArrayList<>();
        Map<String, UnaryOperator<ImageDataset>> transforms = new LinkedHashMap<>();
        transforms.put("fashion", d -> d);
        transforms.put("rotated", MultiTaskMerge::rotated);
        transforms.put("inverted", MultiTaskMerge::inverted);
        transforms.put("coarse", MultiTaskMerge::coarse);
        Map<String, String> descriptions = Map.of(
                "fashion", "the 10 Fashion-MNIST classes",
                "rotated", "the 10 classes, images turned 90 degrees clockwise",
                "inverted", "the 10 classes, intensities reversed (255 - x)",
                "coarse", "4 super-classes: tops (T-shirt, pullover, coat, shirt), trouser and dress, footwear, bag");
        for (Map.Entry<String, UnaryOperator<ImageDataset>> t : transforms.entrySet()) {
            UnaryOperator<ImageDataset> f = t.getValue();
            tasks.add(new Task(t.getKey(), descriptions.get(t.getKey()), f.apply(splits.train()).normalized(stats),
                    f.apply(splits.validation()).normalized(stats), f.apply(splits.test()).normalized(stats)));
        }
        Files.createDirectories(work);
        MultiTaskMerge bench = new MultiTaskMerge(work, tasks, out, command, splits.data(), trainSize, baseEpochs,
                tuneEpochs);
        long started = System.nanoTime();
        bench.run();
        bench.minutes = (System.nanoTime() - started) / 60e9;
        bench.write();
    }

    // ---- tasks ------------------------------------------------------------------------------------------------

    private static ImageDataset rotated(ImageDataset d) {
        int h = d.height();
        int w = d.width();
        if (h != w) {
            throw new KilnException("rotation needs square images, got " + h + "x" + w);
        }
        float[] in = d.values();
        float[] rot = new float[in.length];
        int plane = h * w;
        for (int s = 0; s < d.size() * d.channels(); s++) {
            int base = s * plane;
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    // clockwise: the pixel at (y, x) moves to (x, h - 1 - y)
                    rot[base + x * w + (h - 1 - y)] = in[base + y * w + x];
                }
            }
        }
        return new ImageDataset(rot, d.labels(), d.channels(), h, w, d.classNames(), d.sha256(),
                d.source() + " (rotated 90)");
    }

    private static ImageDataset inverted(ImageDataset d) {
        float[] in = d.values();
        float max = 0;
        for (float v : in) {
            max = Math.max(max, v);
        }
        // raw IDX pixels are 0..255 (or 0..1 if a loader scaled them): reverse within the observed range
        float top = max > 1.5f ? 255f : 1f;
        float[] inv = new float[in.length];
        for (int i = 0; i < in.length; i++) {
            inv[i] = top - in[i];
        }
        return new ImageDataset(inv, d.labels(), d.channels(), d.height(), d.width(), d.classNames(), d.sha256(),
                d.source() + " (inverted)");
    }

    private static ImageDataset coarse(ImageDataset d) {
        int[] labels = new int[d.size()];
        for (int i = 0; i < labels.length; i++) {
            labels[i] = COARSE[d.labels()[i]];
        }
        return new ImageDataset(d.values(), labels, d.channels(), d.height(), d.width(),
                List.of("top", "trouser-or-dress", "footwear", "bag"), d.sha256(), d.source() + " (coarse)");
    }

    // ---- the run ----------------------------------------------------------------------------------------------

    private Path checkpoint(String name) {
        return work.resolve(name + ".safetensors");
    }

    private Path encoder(String name) {
        return work.resolve(name + "-encoder.safetensors");
    }

    void run() {
        Task first = tasks.get(0);
        Path base = checkpoint("base");
        TrainingConfig baseConfig = TrainingConfig.builder("cnn").epochs(baseEpochs).batchSize(BATCH)
                .learningRate(0.05).warmupSteps(first.train().batchCount(BATCH)).seed(1).threads(1).build();
        train(baseConfig, first, null, base, "base");
        writeEncoder(base, encoder("base"));

        List<Path> encoders = new ArrayList<>();
        List<Path> fishers = new ArrayList<>();
        double[] individualTest = new double[tasks.size()];
        double[] individualValidation = new double[tasks.size()];
        double[] baseTest = new double[tasks.size()];
        double[] baseValidation = new double[tasks.size()];
        for (int t = 0; t < tasks.size(); t++) {
            Task task = tasks.get(t);
            TrainingConfig config = TrainingConfig.builder("cnn").epochs(tuneEpochs).batchSize(BATCH)
                    .learningRate(0.02).warmupSteps(10).seed(100 + t).threads(1).build();
            Path file = checkpoint("task-" + task.name());
            train(config, task, base, file, task.name());
            writeEncoder(file, encoder("task-" + task.name()));
            encoders.add(encoder("task-" + task.name()));
            double[] individual = accuracy(encoder("task-" + task.name()), t, task.test(), task.validation());
            individualTest[t] = individual[0];
            individualValidation[t] = individual[1];
            double[] pretrained = accuracy(encoder("base"), t, task.test(), task.validation());
            baseTest[t] = pretrained[0];
            baseValidation[t] = pretrained[1];
            // the Fisher of the task model on its own training data, kept for the encoder's tensors only
            Path fisher = work.resolve("task-" + task.name() + ".fisher.safetensors");
            try (NDManager manager = NDManager.newBaseManager()) {
                FisherEstimator.compute(file, task.train(), new FisherEstimator.Settings(1024,
                        FisherEstimator.Mode.EMPIRICAL, 7), fisher, manager);
            }
            writeEncoder(fisher, work.resolve("task-" + task.name() + "-encoder.fisher.safetensors"));
            fishers.add(work.resolve("task-" + task.name() + "-encoder.fisher.safetensors"));
            rows.put("individual", new Row("individual fine-tuned models (one per task; upper bound)",
                    individualTest.clone(), individualValidation.clone(), "each task with its own encoder"));
            rows.put("base", new Row("pre-trained encoder + each task's head", baseTest.clone(),
                    baseValidation.clone(), "no merging; the heads were trained with their own encoders"));
            write();
        }

        rows.put("linear", evaluate("simple average (linear)", "linear", Map.of(), null, encoders, null));
        write();
        List<Map<String, String>> grid = new ArrayList<>();
        for (String l : List.of("0.3", "0.5", "0.7", "1.0")) {
            grid.add(Map.of("lambda", l));
        }
        rows.put("task-arithmetic", search("task-arithmetic", grid, encoder("base"), encoders, null));
        write();
        grid = new ArrayList<>();
        for (String d : List.of("0.2", "0.5")) {
            for (String l : List.of("0.5", "1.0", "1.5")) {
                grid.add(Map.of("density", d, "lambda", l));
            }
        }
        rows.put("ties", search("ties", grid, encoder("base"), encoders, null));
        write();
        grid = new ArrayList<>();
        for (String d : List.of("0.3", "0.7")) {
            for (String l : List.of("0.3", "0.5", "1.0")) {
                grid.add(Map.of("density", d, "lambda", l));
            }
        }
        rows.put("dare", search("dare", grid, encoder("base"), encoders, null));
        write();
        grid = new ArrayList<>();
        for (String r : List.of("0.1", "0.3")) {
            for (String l : List.of("0.5", "1.0", "1.5")) {
                grid.add(Map.of("ratio", r, "lambda", l));
            }
        }
        rows.put("pcb", search("pcb", grid, encoder("base"), encoders, null));
        write();
        grid = new ArrayList<>();
        for (String e : List.of("1e-8", "1e-6", "1e-4")) {
            grid.add(Map.of("epsilon", e));
        }
        rows.put("fisher", search("fisher", grid, null, encoders, fishers));
        write();
    }

    /** Runs {@code method} over {@code grid}; the setting with the best average validation accuracy is reported. */
    Row search(String method, List<Map<String, String>> grid, Path base, List<Path> encoders, List<Path> stats) {
        Row best = null;
        StringBuilder tried = new StringBuilder();
        for (Map<String, String> params : grid) {
            Row r = evaluate(method, method, params, base, encoders, stats);
            tried.append(tried.length() == 0 ? "" : "; ").append(describe(params))
                    .append(String.format(Locale.ROOT, ": %.1f%%", 100 * r.validationAverage()));
            if (best == null || r.validationAverage() > best.validationAverage()) {
                best = r;
            }
        }
        return new Row(method, best.test(), best.validation(), "**" + best.settings() + "** (validation average: "
                + tried + ")");
    }

    private Row evaluate(String label, String method, Map<String, String> params, Path base, List<Path> encoders,
            List<Path> stats) {
        String tag = method + (params.isEmpty() ? "" : "-" + String.join("-", new TreeMap<>(params).values()));
        Path merged = work.resolve("merged").resolve(tag + ".safetensors");
        List<MergeSpec.ModelInput> inputs = new ArrayList<>();
        for (int i = 0; i < encoders.size(); i++) {
            MergeSpec.ModelInput m = MergeSpec.ModelInput.of(encoders.get(i));
            inputs.add(stats == null ? m : m.withStatistic(stats.get(i)));
        }
        BenchSupport.mergeInputs(method, params, base, inputs, merged, 2, 1L);
        double[] test = new double[tasks.size()];
        double[] validation = new double[tasks.size()];
        for (int t = 0; t < tasks.size(); t++) {
            double[] both = accuracy(merged, t, tasks.get(t).test(), tasks.get(t).validation());
            test[t] = both[0];
            validation[t] = both[1];
        }
        System.out.printf(Locale.ROOT, "%s %s: validation average %.4f%n", method, params, average(validation));
        return new Row(label, test, validation, params.isEmpty() ? "-" : describe(params));
    }

    private void train(TrainingConfig config, Task task, Path startFrom, Path file, String label) {
        FashionRuns.train(config, task.train(), task.validation(), startFrom == null ? null : manager -> {
            // the pre-trained encoder, and a fresh head sized for this task (seeded like the run)
            Map<String, NDArray> start = new LinkedHashMap<>();
            FashionRuns.readAll(startFrom, manager).forEach((k, v) -> {
                if (!k.startsWith(HEAD)) {
                    start.put(k, v);
                }
            });
            KilnModel fresh = ModelZoo.build("cnn", Map.of(), task.train().sampleShape(), task.train().numClasses())
                    .initialize(manager, config.seed());
            fresh.exportParameters(manager).forEach((k, v) -> {
                if (k.startsWith(HEAD)) {
                    start.put(k, v);
                }
            });
            return start;
        }, file, label);
    }

    /** Copies every tensor of {@code file} but the head into {@code encoderFile}. */
    private static void writeEncoder(Path file, Path encoderFile) {
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, NDArray> encoder = new LinkedHashMap<>();
            FashionRuns.readAll(file, manager).forEach((k, v) -> {
                if (!k.startsWith(HEAD)) {
                    encoder.put(k, v);
                }
            });
            SafetensorsWriter.save(encoderFile, Map.of(), encoder);
        }
    }

    /** Accuracy on each split of {@code encoderFile} with task {@code t}'s fine-tuned head, in evaluation mode. */
    double[] accuracy(Path encoderFile, int t, ImageDataset... splits) {
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, NDArray> params = FashionRuns.readAll(encoderFile, manager);
            FashionRuns.readAll(checkpoint("task-" + tasks.get(t).name()), manager).forEach((k, v) -> {
                if (k.startsWith(HEAD)) {
                    params.put(k, v);
                }
            });
            return FashionRuns.accuracy(params, manager, splits);
        }
    }

    private static double average(double[] values) {
        double sum = 0;
        for (double v : values) {
            sum += v;
        }
        return sum / values.length;
    }

    private static String describe(Map<String, String> params) {
        StringBuilder s = new StringBuilder();
        new TreeMap<>(params).forEach((k, v) -> s.append(s.length() == 0 ? "" : " ").append(k).append('=').append(v));
        return s.toString();
    }

    // ---- the page ---------------------------------------------------------------------------------------------

    void write() {
        StringBuilder md = new StringBuilder();
        md.append("# Multi-task merging: one encoder, four tasks from Fashion-MNIST\n\n");
        Task first = tasks.get(0);
        md.append(String.format(Locale.ROOT, "Data: `%s`; a seeded %d-image subset of its training set split 90/10"
                + " into training (%d) and validation (%d) images, and its %d-image test set. Every task uses the same"
                + " images, transformed, with one input normalisation (the original training images' mean/std)."
                + " Model: zoo `cnn` (2 conv-bn-relu-maxpool stages of 32/64 filters, hidden 128, head `fc`)."
                + " Pre-training: %d epochs on the `fashion` task, SGD momentum 0.9, lr 0.05, cosine, seed 1. Each"
                + " task: %d epochs from the pre-trained encoder with a fresh head, lr 0.02, seed 100 + task index."
                + " Merged: every tensor but the head (`fc.*`), batch-norm running statistics included, through"
                + " `MergePipeline` with the method created from the registry; each task is then scored with the"
                + " merged encoder and its own fine-tuned head. `fisher` uses each task model's empirical diagonal"
                + " Fisher on 1024 of its training images. Settings are chosen on the average validation accuracy"
                + " over tasks; the test split is only reported.%n%n", data, trainSize,
                first.train().size(), first.validation().size(), first.test().size(), baseEpochs, tuneEpochs));
        md.append("| task | what it asks |\n|---|---|\n");
        for (Task t : tasks) {
            md.append("| `").append(t.name()).append("` | ").append(t.description()).append(" |\n");
        }
        md.append("\n## Test accuracy per task (FusionBench style)\n\n| method |");
        for (Task t : tasks) {
            md.append(' ').append(t.name()).append(" |");
        }
        md.append(" **average** | validation average | settings (chosen on validation) |\n|---|");
        md.append("---:|".repeat(tasks.size() + 2)).append("---|\n");
        for (Row r : rows.values()) {
            md.append("| ").append(r.method()).append(" |");
            for (double v : r.test()) {
                md.append(String.format(Locale.ROOT, " %.2f |", 100 * v));
            }
            md.append(String.format(Locale.ROOT, " **%.2f** | %.2f | %s |%n", 100 * r.testAverage(),
                    100 * r.validationAverage(), r.settings()));
        }
        md.append("\n");
        if (!Double.isNaN(minutes)) {
            md.append(String.format(Locale.ROOT, "Whole run: %.1f minutes.%n%n", minutes));
        }
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(BenchSupport.machine()).append("; 1 intra-op thread for training (load average ")
                .append(Machine.loadAverage()).append(" when written; accuracies do not depend on it). Written ")
                .append(Instant.now()).append(".\n");
        Machine.writePage(out, md.toString());
    }
}
