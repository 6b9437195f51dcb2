package dev.kiln.benchmarks.compress;

import dev.kiln.benchmarks.Machine;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.core.bench.BenchmarkHarness;
import dev.kiln.core.bench.BenchmarkResult;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.model.CheckpointModels;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingListener;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Registry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Compression of trained classifiers (issue 6): trains a zoo {@code cnn} and a {@code resnet} on the embedded
 * Fashion-MNIST, compresses each with every compressor setting of {@link CompressBenchSupport#GRID} through
 * {@link CompressPipeline}, and measures every compressed checkpoint together with the original in one
 * {@link BenchmarkHarness} run (accuracy on the test split, samples/s, latency; variants interleaved per repeat).
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.compress.CompressClassifiers
 *     [--data data/fashion-mnist-mini] [--models cnn,resnet] [--epochs 3] [--repeats 7]
 *     [--work /tmp/kiln-compress-classifiers] [--out docs/results/compress-classifiers.md] [--command "..."]
 * </pre>
 */
public final class CompressClassifiers {

    private CompressClassifiers() {
    }

    /** One model's measurements: the compression reports by setting label and the benchmark run. */
    record ModelResult(String model, int epochs, double trainSeconds, Map<String, CompressPipeline.Report> reports,
            BenchmarkResult bench, Map<String, Loaded> loaded) {
    }

    /** How a checkpoint loads: its parameter count and which layers run factored or narrower than the original. */
    record Loaded(long parameters, String structure) {
    }

    /** Loads {@code file} the way the benchmark harness does and describes its structure against {@code original}. */
    static Loaded describe(Path file, Map<String, Shape> original) {
        try (NDManager manager = NDManager.newBaseManager()) {
            KilnModel model = CheckpointModels.load(file, manager).model();
            List<String> parts = new ArrayList<>();
            model.parameters().forEach((name, p) -> {
                Shape shape = p.getArray().getShape();
                if (name.endsWith(".weight.u")) {
                    parts.add(name.substring(0, name.length() - ".weight.u".length()) + " r=" + shape.get(1));
                } else if (name.endsWith(".weight") && original.containsKey(name)
                        && original.get(name).get(0) != shape.get(0)) {
                    parts.add(name.substring(0, name.length() - ".weight".length()) + " " + original.get(name).get(0)
                            + "->" + shape.get(0));
                }
            });
            return new Loaded(model.parameterCount(), parts.isEmpty() ? "dense" : String.join(", ", parts));
        }
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> o = CompressBenchSupport.parse(args);
        Path data = Path.of(o.getOrDefault("data", "data/fashion-mnist-mini"));
        List<String> models = List.of(o.getOrDefault("models", "cnn,resnet").split(","));
        int epochs = Integer.parseInt(o.getOrDefault("epochs", "3"));
        int repeats = Integer.parseInt(o.getOrDefault("repeats", "7"));
        Path work = Path.of(o.getOrDefault("work", "/tmp/kiln-compress-classifiers"));
        Path out = Path.of(o.getOrDefault("out", "docs/results/compress-classifiers.md"));
        String command = o.getOrDefault("command", "(not given)");
        Files.createDirectories(work);
        // the engine must be loaded before its thread settings can be changed
        ai.djl.engine.Engine.getInstance();
        JniUtils.setNumThreads(1);
        JniUtils.setNumInteropThreads(1);

        DataSource source = Datasets.open(data);
        if (!(source instanceof LabeledData labeled) || labeled.test() == null) {
            throw new KilnException("dataset " + data + " must be an IDX folder with t10k test files");
        }
        Registry registry = Registry.discover(CompressClassifiers.class.getClassLoader());
        List<ModelResult> results = new ArrayList<>();
        long started = System.nanoTime();
        for (String model : models) {
            results.add(runModel(registry, model, labeled.train(), labeled.test(), epochs, repeats, work));
            write(out, command, data, labeled, results, repeats, (System.nanoTime() - started) / 60e9);
        }
    }

    static ModelResult runModel(Registry registry, String model, ImageDataset train, ImageDataset test, int epochs,
            int repeats, Path work) {
        Path original = work.resolve(model + ".safetensors");
        long t0 = System.nanoTime();
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingConfig config = TrainingConfig.builder(model).epochs(epochs).batchSize(64).learningRate(0.05)
                    .warmupSteps(train.batchCount(64) / 2).seed(1).threads(1).build();
            TrainingResult r = new TrainingRun(config, train, test, new TrainingListener() {
                @Override
                public void onEpoch(EpochResult e) {
                    System.out.printf(Locale.ROOT, "%s epoch %d/%d: loss %.4f, test acc %.4f, %.1f s%n", model,
                            e.epoch() + 1, epochs, e.trainLoss(), e.evalAccuracy(), e.seconds());
                }
            }).run(manager);
            TrainingRun.saveModel(r.model(), r.metadata(), original);
        }
        double trainSeconds = (System.nanoTime() - t0) / 1e9;

        Map<String, CompressPipeline.Report> reports = new LinkedHashMap<>();
        List<BenchmarkHarness.Variant> variants = new ArrayList<>();
        variants.add(BenchmarkHarness.Variant.plain("original"));
        try (NDManager manager = NDManager.newBaseManager()) {
            for (CompressBenchSupport.Setting s : CompressBenchSupport.GRID) {
                Path file = work.resolve(model + "-" + s.tag() + ".safetensors");
                CompressPipeline.Report report = CompressBenchSupport.compress(registry, s, original, file, manager);
                reports.put(s.label(), report);
                variants.add(new BenchmarkHarness.Variant(s.label(), null, Map.of(), file));
                System.out.printf(Locale.ROOT, "%s %s: %d -> %d bytes, mean rel error %.4f%n", model, s.label(),
                        report.fileBytesBefore(), report.fileBytesAfter(),
                        CompressBenchSupport.meanRelativeError(report));
            }
        }
        Map<String, Shape> shapes = new LinkedHashMap<>();
        try (NDManager manager = NDManager.newBaseManager()) {
            CheckpointModels.load(original, manager).model().parameters().forEach((name, p) -> shapes.put(name,
                    p.getArray().getShape()));
        }
        Map<String, Loaded> loaded = new LinkedHashMap<>();
        loaded.put("original", describe(original, shapes));
        for (BenchmarkHarness.Variant v : variants.subList(1, variants.size())) {
            loaded.put(v.name(), describe(v.checkpoint(), shapes));
        }
        BenchmarkResult bench;
        try (NDManager manager = NDManager.newBaseManager()) {
            bench = new BenchmarkHarness(registry, System.out::println).run(original, test, variants,
                    new BenchmarkHarness.Settings(64, 2, repeats, 16, 0, 42), manager);
        }
        return new ModelResult(model, epochs, trainSeconds, reports, bench, loaded);
    }

    /** Which weights 2:4 left dense (their input length is not a multiple of 4), from the two reports. */
    static String denseUnderNm(ModelResult r) {
        CompressPipeline.Report magnitude = r.reports().get("magnitude sparsity=0.5");
        CompressPipeline.Report nm = r.reports().get("nm n=2 m=4");
        if (magnitude == null || nm == null) {
            return "";
        }
        java.util.Set<String> names = new java.util.LinkedHashSet<>();
        magnitude.tensors().forEach(t -> names.add(t.name()));
        nm.tensors().forEach(t -> names.remove(t.name()));
        String nmNote = names.isEmpty() ? "2:4 compressed every weight."
                : "2:4 left " + names + " dense (input length not a multiple of 4), so its density column covers"
                        + " the other weights only.";
        CompressPipeline.Report rank = r.reports().get("low-rank rank=32");
        if (rank != null && !rank.tensors().isEmpty()) {
            java.util.Set<String> thin = new java.util.LinkedHashSet<>();
            magnitude.tensors().forEach(t -> thin.add(t.name()));
            rank.tensors().forEach(t -> thin.remove(t.name()));
            if (!thin.isEmpty()) {
                nmNote += " Rank 32 left " + thin + " dense (a side of at most 32).";
            }
        }
        return nmNote;
    }

    static void write(Path out, String command, Path data, LabeledData labeled, List<ModelResult> results,
            int repeats, double minutes) {
        StringBuilder md = new StringBuilder();
        md.append("# Compression of trained classifiers (Fashion-MNIST)\n\n");
        md.append(String.format(Locale.ROOT, "Data: `%s` (%d training, %d test images). Each model is trained"
                + " once (SGD momentum 0.9, lr 0.05 with warm-up and cosine, batch 64, seed 1, inputs normalised),"
                + " then compressed with every setting below through `CompressPipeline` (the compressor created"
                + " from the registry exactly as `kiln:compress` creates it). Accuracy, samples/s and latency come"
                + " from **one** `BenchmarkHarness` run per model in which the original and every compressed"
                + " checkpoint are variants (batch 64, 2 warm-up batches, %d timed passes over the test split,"
                + " variants rotated every repeat, medians; 16 single-sample latencies per repeat).%n%n", data,
                labeled.train().size(), labeled.test().size(), repeats));
        md.append("Column meanings: *file* is the safetensors file size on disk; *mean rel. error* is the"
                + " unweighted mean over compressed tensors of ||W - W_hat||_F / ||W||_F (biases, norms and"
                + " running statistics are never compressed); *density* is the non-zero fraction of the"
                + " reconstructed compressed tensors; *speedup* is the original's median pass time divided by the"
                + " variant's.\n\n");
        md.append("**Which rows can be faster.** Only two compressors change what inference computes, and the"
                + " *loaded as* column shows what each checkpoint became: `low-rank` Linear layers load as"
                + " `FactoredLinear` (two thin matmuls, `r=` is the rank) when r (out + in) < out in, while conv"
                + " kernels are multiplied back to dense; `structured` loads genuinely narrower layers (`a->b`"
                + " outputs; the next layer's inputs and the batch norm in between shrink with it) for the cnn's"
                + " conv1, conv2 and fc1 and for each resnet block's first conv. The classifier head and resnet's"
                + " residual-path convs (stem, second convs, shortcuts) keep their size with zero rows, and a"
                + " narrowed layer's removed units lose their bias and batch-norm shift too. Every other row is"
                + " rebuilt into dense float32 weights on load (int8 dequantised, pruned weights stored dense), so its"
                + " expected speedup is 1.0x and any deviation is measurement noise on a shared machine: sparser, not"
                + " faster (see skip.md section 4: zeros pay off only with sparse kernels). *params loaded* counts"
                + " the parameters of the model as loaded.\n\n");
        md.append("Low-rank files can grow: rank-r factors of an m x n weight store r(m + n) numbers, more than the"
                + " m n of the weight once r > m n / (m + n), and energy 0.99 needs such ranks for some tensors;"
                + " `low-rank-sparse` adds the residual's values and indices on top.\n\n");
        for (ModelResult r : results) {
            BenchmarkResult.VariantResult base = r.bench().baseline();
            long fileBefore = r.reports().values().iterator().next().fileBytesBefore();
            md.append(String.format(Locale.ROOT, "## `%s` (%d epochs, trained in %.0f s)%n%n", r.model(),
                    r.epochs(), r.trainSeconds()));
            md.append("| compressor | file KiB (before -> after) | file ratio | mean rel. error | density |"
                    + " loaded as | params loaded | test accuracy | change | samples/s | speedup |"
                    + " latency b1 p50 ms |\n"
                    + "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
            md.append(String.format(Locale.ROOT, "| original | %s | 1.00x | 0 | 1.000 | dense | %d | %.2f%% | |"
                    + " %.0f | 1.00x | %.2f |%n", CompressBenchSupport.kib(fileBefore),
                    r.loaded().get("original").parameters(), 100 * base.accuracy(), base.samplesPerSecond(),
                    base.latency1P50Millis()));
            for (Map.Entry<String, CompressPipeline.Report> e : r.reports().entrySet()) {
                CompressPipeline.Report rep = e.getValue();
                BenchmarkResult.VariantResult v = r.bench().variant(e.getKey());
                Loaded l = r.loaded().get(e.getKey());
                md.append(String.format(Locale.ROOT, "| %s | %s -> %s | %.2fx | %.4f | %.3f | %s | %d | %.2f%% |"
                        + " %+.2f pp | %.0f | %.2fx | %.2f |%n", e.getKey(),
                        CompressBenchSupport.kib(rep.fileBytesBefore()),
                        CompressBenchSupport.kib(rep.fileBytesAfter()),
                        rep.fileBytesBefore() / (double) rep.fileBytesAfter(),
                        CompressBenchSupport.meanRelativeError(rep), CompressBenchSupport.density(rep),
                        l.structure(), l.parameters(),
                        100 * v.accuracy(), 100 * (v.accuracy() - base.accuracy()), v.samplesPerSecond(),
                        v.speedup(), v.latency1P50Millis()));
            }
            md.append(String.format(Locale.ROOT, "%nBenchmark: %d test samples on %s, %s. %s%n%n",
                    r.bench().samples(), r.bench().device(), r.bench().engine(), denseUnderNm(r)));
        }
        md.append(String.format(Locale.ROOT, "Whole run: %.1f minutes.%n%n", minutes));
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(CompressBenchSupport.machine()).append(". Written ").append(Instant.now())
                .append(".\n");
        Machine.writePage(out, md.toString());
    }
}
