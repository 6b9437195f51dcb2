package dev.kiln.core.bench;

import dev.kiln.core.model.CheckpointModels;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.training.ParameterStore;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.Normalization;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Measures classifier variants against a baseline in one run: accuracy on the test split, throughput at a stated
 * batch size, per-batch latency at that batch size and at batch size 1, and peak memory.
 *
 * <p>How the numbers are made honest: all variants, the baseline included, run through the same
 * {@link LayeredForward} loop on inputs prepared before the clock starts; every timed call ends by reading the
 * predictions back to the host, so asynchronous devices are synchronised inside the measured interval; each variant
 * gets untimed warm-up batches; timed passes are interleaved round-robin (with the starting variant rotated every
 * repeat) so that thermal or background drift hits every variant alike; and speedup is the ratio of medians of whole
 * passes measured in this run, never compared against numbers from another run.
 */
public final class BenchmarkHarness {
    private final Registry registry;
    private final Consumer<String> log;

    /**
     * @param registry where skip policies are looked up
     * @param log receives one line per finished step, or null
     */
    public BenchmarkHarness(Registry registry, Consumer<String> log) {
        this.registry = registry;
        this.log = log == null ? line -> { } : log;
    }

    /**
     * One thing to measure.
     *
     * @param name unique name used in reports and gates
     * @param skipId skip policy id, or null to run every block
     * @param skipParams the skip policy's parameters as written in the pom
     * @param checkpoint another checkpoint (e.g. a compressed one) to use instead of the benchmark's, or null
     */
    public record Variant(String name, String skipId, Map<String, String> skipParams, Path checkpoint) {
        public Variant {
            skipParams = skipParams == null ? Map.of() : Map.copyOf(skipParams);
        }

        /** A variant that runs the benchmark's checkpoint unchanged. */
        public static Variant plain(String name) {
            return new Variant(name, null, Map.of(), null);
        }

        /** Whether this variant is the benchmark's checkpoint with every block running. */
        public boolean isPlain() {
            return skipId == null && checkpoint == null;
        }
    }

    /**
     * How to measure.
     *
     * @param batchSize samples per batch for accuracy, throughput and batch latency
     * @param warmup untimed batches per variant (at the batch size and at batch size 1) before timing
     * @param repeats timed passes over the test data per variant; medians are taken over these
     * @param latencySamples single samples timed per repeat for the batch-size-1 latency
     * @param limit use at most this many test samples (0: all)
     * @param seed seeds stochastic skip policies
     */
    public record Settings(int batchSize, int warmup, int repeats, int latencySamples, int limit, long seed) {
        public Settings {
            check("batchSize", batchSize, 1);
            check("warmup", warmup, 0);
            check("repeats", repeats, 1);
            check("latencySamples", latencySamples, 1);
            check("limit", limit, 0);
        }

        private static void check(String name, int value, int min) {
            if (value < min) {
                throw new KilnException("benchmark: <" + name + "> is " + value + "; it must be at least " + min);
            }
        }

        /** Batch size 64, 3 warm-up batches, 3 repeats, 32 single samples, the whole test split, seed 42. */
        public static Settings defaults() {
            return new Settings(64, 3, 3, 32, 0, 42);
        }
    }

    /**
     * Runs the benchmark.
     *
     * @param checkpoint the baseline classifier checkpoint
     * @param test the labelled test split, unnormalised (each variant normalises it with its checkpoint's stats)
     * @param variants what to measure; when none is a plain run of {@code checkpoint}, a variant named
     *     {@code baseline} is added first. The first plain variant is the baseline speedups are relative to.
     * @param manager where models and inputs live (its device is the one measured)
     */
    public BenchmarkResult run(Path checkpoint, ImageDataset test, List<Variant> variants, Settings settings,
            NDManager manager) {
        List<Variant> all = withBaseline(variants);
        Map<String, SkipPolicy> policies = new HashMap<>();
        // Every id and parameter is checked before a model is loaded.
        for (Variant v : all) {
            if (v.skipId() != null) {
                try {
                    policies.put(v.name(), registry.create(Kind.SKIP, SkipPolicy.class, v.skipId(),
                            v.skipParams()));
                } catch (KilnException e) {
                    throw new KilnException("variant '" + v.name() + "': " + e.getMessage(), e);
                }
            }
        }
        ImageDataset data = settings.limit() > 0 && settings.limit() < test.size() ? test.head(settings.limit())
                : test;
        if (data.size() == 0) {
            throw new KilnException("benchmark: the test split of " + test.source() + " is empty");
        }
        ParameterStore store = new ParameterStore(manager, false);
        Map<Path, CheckpointModels.Loaded> models = new HashMap<>();
        Map<Normalization, Inputs> inputsByStats = new HashMap<>();
        List<Prepared> prepared = new ArrayList<>();
        CheckpointModels.Loaded base = load(models, checkpoint, manager);
        for (Variant v : all) {
            CheckpointModels.Loaded loaded = v.checkpoint() == null ? base : load(models, v.checkpoint(), manager);
            if (!loaded.classes().equals(base.classes())
                    || !loaded.model().sampleShape().equals(base.model().sampleShape())) {
                throw new KilnException("variant '" + v.name() + "': checkpoint " + loaded.file() + " classifies "
                        + loaded.model().sampleShape() + " inputs into " + loaded.classes() + ", but the baseline "
                        + checkpoint + " classifies " + base.model().sampleShape() + " into " + base.classes());
            }
            if (!data.sampleShape().equals(loaded.model().sampleShape())
                    || data.numClasses() != loaded.classes().size()) {
                throw new KilnException("dataset " + test.source() + " has " + data.sampleShape() + " samples in "
                        + data.numClasses() + " classes, but checkpoint " + loaded.file() + " expects "
                        + loaded.model().sampleShape() + " samples in " + loaded.classes().size() + " classes");
            }
            LayeredForward forward = new LayeredForward(loaded.model());
            SkipPolicy policy = policies.get(v.name());
            if (policy != null && forward.residualBlocks() == 0) {
                throw new KilnException("variant '" + v.name() + "': skip policy '" + v.skipId() + "' needs residual"
                        + " blocks, but model '" + loaded.model().id() + "' has none (use model resnet)");
            }
            Normalization stats = loaded.normalization();
            Inputs inputs = inputsByStats.computeIfAbsent(stats == null ? NO_STATS : stats,
                    key -> Inputs.of(stats == null ? data : data.normalized(stats), settings, manager));
            prepared.add(new Prepared(v, loaded, forward, policy, inputs));
        }

        Map<String, Measurements> measured = new LinkedHashMap<>();
        boolean rssPerVariant = false;
        for (Prepared p : prepared) {
            boolean reset = resetPeaks();
            rssPerVariant |= reset;
            Pass pass = pass(p, store, manager, settings, null);
            Measurements m = new Measurements();
            m.accuracy = (double) pass.correct / data.size();
            m.blocksRunMean = pass.blocksRun / (double) p.inputs.batches.size();
            m.heapPeak = heapPeak();
            m.rssPeak = rssPeak();
            m.rssPerVariant = reset;
            measured.put(p.variant.name(), m);
            for (int i = 0; i < settings.warmup(); i++) {
                runBatch(p, store, manager, settings, p.inputs.batches.get(i % p.inputs.batches.size()), i);
                runBatch(p, store, manager, settings, p.inputs.singles.get(i % p.inputs.singles.size()), i);
            }
            log.accept(String.format(java.util.Locale.ROOT, "%s: accuracy %.4f on %d test samples",
                    p.variant.name(), m.accuracy, data.size()));
        }
        for (int r = 0; r < settings.repeats(); r++) {
            for (int k = 0; k < prepared.size(); k++) {
                Prepared p = prepared.get((k + r) % prepared.size());
                Measurements m = measured.get(p.variant.name());
                Pass pass = pass(p, store, manager, settings, m.batchMillis);
                m.passSeconds.add(pass.seconds);
                for (int i = 0; i < p.inputs.singles.size(); i++) {
                    m.singleMillis.add(runBatch(p, store, manager, settings, p.inputs.singles.get(i), i).millis);
                }
            }
            log.accept("benchmark repeat " + (r + 1) + "/" + settings.repeats() + " done");
        }

        double baselineSeconds = BenchStats.median(measured.get(prepared.get(0).variant.name()).passSeconds);
        List<BenchmarkResult.VariantResult> results = new ArrayList<>();
        for (Prepared p : prepared) {
            Measurements m = measured.get(p.variant.name());
            double median = BenchStats.median(m.passSeconds);
            results.add(new BenchmarkResult.VariantResult(p.variant.name(), p == prepared.get(0),
                    p.loaded.file().toString(), p.variant.skipId(), p.variant.skipParams(), m.accuracy,
                    p.forward.residualBlocks(), m.blocksRunMean, median, data.size() / median,
                    baselineSeconds / median, BenchStats.percentile(m.batchMillis, 50),
                    BenchStats.percentile(m.batchMillis, 95), BenchStats.percentile(m.singleMillis, 50),
                    BenchStats.percentile(m.singleMillis, 95), m.heapPeak, m.rssPeak, m.rssPerVariant,
                    List.copyOf(m.passSeconds)));
        }
        return new BenchmarkResult(checkpoint.toString(), base.model().id(), base.model().modelParameters().asMap(),
                test.source(), data.size(), settings, manager.getDevice().toString(),
                manager.getEngine().getEngineName() + " " + manager.getEngine().getVersion(),
                Runtime.getRuntime().availableProcessors(), rssPerVariant, results);
    }

    private static final Normalization NO_STATS = new Normalization(new float[0], new float[0]);

    private static List<Variant> withBaseline(List<Variant> variants) {
        List<Variant> all = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (Variant v : variants) {
            if (v.name() == null || v.name().isBlank()) {
                throw new KilnException("benchmark: every variant needs a <name>");
            }
            if (!names.add(v.name())) {
                throw new KilnException("benchmark: two variants are named '" + v.name() + "'; names must be unique");
            }
        }
        int baseline = -1;
        for (int i = 0; i < variants.size() && baseline < 0; i++) {
            if (variants.get(i).isPlain()) {
                baseline = i;
            }
        }
        if (baseline < 0) {
            if (names.contains("baseline")) {
                throw new KilnException("benchmark: variant 'baseline' must be a plain run of the checkpoint (no"
                        + " <skip>, no <checkpoint>); rename it or make it plain");
            }
            all.add(Variant.plain("baseline"));
            all.addAll(variants);
        } else {
            all.add(variants.get(baseline));
            for (int i = 0; i < variants.size(); i++) {
                if (i != baseline) {
                    all.add(variants.get(i));
                }
            }
        }
        return all;
    }

    /** The first plain variant's name, as {@link #run} picks it: gates use it for accuracy drops. */
    public static String baselineName(List<Variant> variants) {
        return withBaseline(variants).get(0).name();
    }

    /** Every variant's name, the implicit baseline included, in measurement order. */
    public static List<String> variantNames(List<Variant> variants) {
        return withBaseline(variants).stream().map(Variant::name).toList();
    }

    private static CheckpointModels.Loaded load(Map<Path, CheckpointModels.Loaded> cache, Path file,
            NDManager manager) {
        Path key = file.toAbsolutePath().normalize();
        CheckpointModels.Loaded loaded = cache.get(key);
        if (loaded == null) {
            loaded = CheckpointModels.load(file, manager);
            cache.put(key, loaded);
        }
        return loaded;
    }

    private Pass pass(Prepared p, ParameterStore store, NDManager manager, Settings settings,
            List<Double> batchMillis) {
        Pass pass = new Pass();
        long start = System.nanoTime();
        for (int b = 0; b < p.inputs.batches.size(); b++) {
            Batch result = runBatch(p, store, manager, settings, p.inputs.batches.get(b), b);
            int offset = b * settings.batchSize();
            for (int i = 0; i < result.predictions.length; i++) {
                if (result.predictions[i] == p.inputs.labels[offset + i]) {
                    pass.correct++;
                }
            }
            pass.blocksRun += result.blocksRun;
            if (batchMillis != null) {
                batchMillis.add(result.millis);
            }
        }
        pass.seconds = (System.nanoTime() - start) / 1e9;
        return pass;
    }

    private static Batch runBatch(Prepared p, ParameterStore store, NDManager manager, Settings settings,
            NDArray inputs, int index) {
        long start = System.nanoTime();
        try (NDManager scope = manager.newSubManager()) {
            // Results attach to the first operand's manager; without this they would pile up in the long-lived one.
            inputs.tempAttach(scope);
            SkipSession session = p.policy == null ? null : p.policy.begin(p.forward.layout(), Phase.FORWARD, 0,
                    new SplittableRandom(settings.seed() * 1_000_003L + index));
            LayeredForward.Output out = p.forward.forward(store, inputs, session);
            // Reading back synchronises the device, so the interval covers the whole computation.
            long[] predictions = out.logits().argMax(1).toLongArray();
            double millis = (System.nanoTime() - start) / 1e6;
            return new Batch(predictions, out.blocksRun(), millis);
        }
    }

    /** Resets the heap pools' peaks and, on Linux, the process's peak RSS; returns whether the RSS reset worked. */
    private static boolean resetPeaks() {
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP && pool.isValid()) {
                pool.resetPeakUsage();
            }
        }
        try {
            // "5" resets VmHWM to the current RSS (Linux 4.0+), so the next reading is this variant's peak.
            Files.writeString(Path.of("/proc/self/clear_refs"), "5");
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    static long heapPeak() {
        long total = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP && pool.isValid() && pool.getPeakUsage() != null) {
                total += pool.getPeakUsage().getUsed();
            }
        }
        return total > 0 ? total : ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    /** Peak resident set size in bytes from {@code /proc/self/status} (VmHWM), or -1 where there is none. */
    static long rssPeak() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    String[] parts = line.substring(6).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024;
                }
            }
        } catch (Exception e) {
            return -1;
        }
        return -1;
    }

    /** Inputs prepared on the device before any clock starts. */
    private static final class Inputs {
        final List<NDArray> batches = new ArrayList<>();
        final List<NDArray> singles = new ArrayList<>();
        int[] labels;

        static Inputs of(ImageDataset data, Settings settings, NDManager manager) {
            Inputs in = new Inputs();
            in.labels = data.labels();
            int[] order = new int[data.size()];
            java.util.Arrays.setAll(order, i -> i);
            for (int from = 0; from < data.size(); from += settings.batchSize()) {
                NDList batch = data.batch(manager, order, from, Math.min(settings.batchSize(), data.size() - from));
                batch.get(1).close();
                in.batches.add(batch.get(0));
            }
            for (int i = 0; i < Math.min(settings.latencySamples(), data.size()); i++) {
                NDList one = data.batch(manager, order, i, 1);
                one.get(1).close();
                in.singles.add(one.get(0));
            }
            return in;
        }
    }

    private record Prepared(Variant variant, CheckpointModels.Loaded loaded, LayeredForward forward,
            SkipPolicy policy, Inputs inputs) {
    }

    private record Batch(long[] predictions, int blocksRun, double millis) {
    }

    private static final class Pass {
        double seconds;
        long correct;
        long blocksRun;
    }

    private static final class Measurements {
        double accuracy;
        double blocksRunMean;
        long heapPeak;
        long rssPeak;
        boolean rssPerVariant;
        final List<Double> passSeconds = new ArrayList<>();
        final List<Double> batchMillis = new ArrayList<>();
        final List<Double> singleMillis = new ArrayList<>();
    }
}
