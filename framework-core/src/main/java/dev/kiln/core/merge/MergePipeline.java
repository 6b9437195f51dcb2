package dev.kiln.core.merge;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.DirectBuffers;
import dev.kiln.core.safetensors.FloatBits;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.ShardedCheckpoint;
import dev.kiln.core.safetensors.ShardedCheckpointWriter;
import dev.kiln.core.safetensors.TensorInfo;
import dev.kiln.core.safetensors.TensorSpec;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.KilnVersion;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MagnitudeRanks;
import dev.kiln.spi.merge.MagnitudeTrim;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CompletionService;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorCompletionService;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.random.RandomGenerator;

/**
 * Merges checkpoints tensor by tensor with a {@link MergeMethod}, streaming so memory holds only the tensors in
 * flight.
 *
 * <p>Everything that can be checked from the headers (files readable, same tensor names, shapes and dtypes in every
 * input, a base when the method needs one) is checked before any output is started. Values are checked lazily per
 * tensor (NaN/Inf), which is safe because the output is written to temporary files that are renamed onto the output
 * path only when every tensor has been merged: a failed merge leaves no file at the output path.
 *
 * <p>Each tensor is merged on its own {@link NDManager} by a bounded pool; its random source is derived from the
 * seed and the tensor's name alone, so the result does not depend on the number of threads or their scheduling.
 * Float tensors are merged in float32 and written in their input dtype (or the requested one); integer and boolean
 * tensors are copied unchanged from the base (or the first model).
 */
public final class MergePipeline {

    /** Seconds between progress events. */
    private static final long PROGRESS_NANOS = 2_000_000_000L;

    /** Time between early flushes of the output while workers merge. */
    private static final long FLUSH_NANOS = 500_000_000L;

    /**
     * Default largest tensor (in elements) an elementwise or magnitude-trimming method merges whole; bigger ones go in
     * row blocks. 128K float32 elements are 512 KiB per input. Measured on the 3 x 1.5 GB synthetic benchmark with two
     * merge threads (docs/results/merge-memory.md): with 1M-element blocks ties peaked at about 0.8 GB RSS (1.2-1.6
     * GB with 2M and 4M). Since the merge arithmetic became a chain of float kernels and each merge thread runs
     * libtorch single-threaded, small blocks take less CPU time, because a block's dozen temporaries then stay in the
     * core's cache instead of streaming from memory on every kernel: a ties merge took 8.6-8.9 s of CPU with 128K,
     * 9.3-9.8 s with 256K, 9.5 s with 64K and 10.0-10.3 s with 512K (linear about 5% more with 128K than 256K).
     */
    static final long DEFAULT_BLOCK_ELEMENTS = 1L << 17;

    private final MergeMethod method;
    private final MergeSpec spec;
    private long blockElements = DEFAULT_BLOCK_ELEMENTS;
    private final EventSink events;
    /** Per model, its statistic file (e.g. diagonal Fisher) or null; set by {@link #run} before merging starts. */
    private List<ShardedCheckpoint> statistics = List.of();
    /** The method's magnitude trimming, or null. */
    private final MagnitudeTrim trim;
    /** With trim-scope=model: the selections over the whole model, found before merging starts. */
    private ModelRanks modelRanks;

    /** Selections over all float tensors of each model, and where each tensor's blocks start in the scope's plan. */
    private record ModelRanks(MagnitudeCuts.Found[][] found, long[][] counts, long numel,
            Map<String, Integer> firstBlock, boolean checked) {
    }

    public MergePipeline(MergeMethod method, MergeSpec spec, EventSink events) {
        this.method = method;
        this.spec = spec;
        this.events = events == null ? e -> { } : events;
        this.trim = method instanceof MagnitudeTrim t ? t : null;
    }

    /** For tests: a small block size exercises row-block merging on small tensors. */
    void blockElements(long elements) {
        if (elements < 1) {
            throw new IllegalArgumentException("block size " + elements + " < 1");
        }
        this.blockElements = elements;
    }

    /** The report file written beside {@code output}. */
    public static Path reportFile(Path output) {
        return output.resolveSibling(stem(output) + ".merge-report.json");
    }

    /** The file a merge to {@code output} produces: the output itself, or the index when sharded. */
    public static Path producedFile(Path output, long maxShardBytes) {
        return maxShardBytes > 0 ? output.resolveSibling(stem(output) + ".safetensors.index.json") : output;
    }

    static String stem(Path output) {
        String name = output.getFileName().toString();
        return name.endsWith(".safetensors") ? name.substring(0, name.length() - ".safetensors".length()) : name;
    }

    /** Validates, merges and writes the output and the report; returns the report. */
    public Map<String, Object> run() {
        if (spec.models().isEmpty()) {
            throw new KilnException("merge: no models to merge; list at least one model");
        }
        if (method.requiresBase() && spec.base() == null) {
            throw new KilnException("merge method '" + spec.methodId() + "' needs a base model (task vectors are "
                    + "differences to it); set base");
        }
        if (spec.outputDtype() != null && !spec.outputDtype().isFloating()) {
            throw new KilnException("merge: outputDtype must be a float type (F32, F16, BF16, F64), not "
                    + spec.outputDtype());
        }
        long started = System.nanoTime();
        List<ShardedCheckpoint> opened = new ArrayList<>();
        try {
            ShardedCheckpoint base = spec.base() == null ? null : open(opened, spec.base(), "base model");
            List<ShardedCheckpoint> models = new ArrayList<>();
            for (int i = 0; i < spec.models().size(); i++) {
                models.add(open(opened, spec.models().get(i).path(), "model " + (i + 1)));
            }
            ShardedCheckpoint reference = base != null ? base : models.get(0);
            List<String> names = reference.names();
            checkCompatible(reference, base != null ? "the base model (" + spec.base() + ")"
                    : "model 1 (" + spec.models().get(0).path() + ")", base, models);
            List<ShardedCheckpoint> stats = new ArrayList<>();
            for (int i = 0; i < spec.models().size(); i++) {
                Path file = spec.models().get(i).statistic();
                ShardedCheckpoint s = file == null ? null : open(opened, file, "the statistic of " + modelRole(i));
                if (s != null) {
                    checkStatistic(reference, s, i);
                }
                stats.add(s);
            }
            statistics = java.util.Collections.unmodifiableList(stats);
            return merge(base, models, reference, names, started);
        } finally {
            for (ShardedCheckpoint c : opened) {
                c.close();
            }
        }
    }

    private static ShardedCheckpoint open(List<ShardedCheckpoint> opened, Path path, String role) {
        if (!Files.exists(path)) {
            throw new KilnException("merge: " + role + " " + path + " does not exist");
        }
        try {
            ShardedCheckpoint c = ShardedCheckpoint.open(path);
            opened.add(c);
            return c;
        } catch (KilnException e) {
            throw new KilnException("merge: cannot read " + role + " " + path + ": " + e.getMessage(), e);
        }
    }

    private String modelRole(int i) {
        return "model " + (i + 1) + " (" + spec.models().get(i).path() + ")";
    }

    /** Every float tensor merged needs a float statistic of the same shape; checked from headers, before writing. */
    private void checkStatistic(ShardedCheckpoint reference, ShardedCheckpoint statistic, int i) {
        Path file = spec.models().get(i).statistic();
        for (String name : reference.names()) {
            TensorInfo want = reference.info(name);
            if (!want.dtype().isFloating()) {
                continue;
            }
            if (!statistic.contains(name)) {
                throw new KilnException("merge: the statistic " + file + " of " + modelRole(i) + " has no tensor '"
                        + name + "'; it must hold one per-element value for every float tensor of the model");
            }
            TensorInfo got = statistic.info(name);
            if (!Arrays.equals(want.shape(), got.shape())) {
                throw new KilnException("merge: tensor '" + name + "' has shape " + Arrays.toString(got.shape())
                        + " in the statistic " + file + " of " + modelRole(i) + " but shape "
                        + Arrays.toString(want.shape()) + " in the model");
            }
            if (!got.dtype().isFloating()) {
                throw new KilnException("merge: tensor '" + name + "' has dtype " + got.dtype() + " in the statistic "
                        + file + " of " + modelRole(i) + "; a float type is needed");
            }
        }
    }

    private void checkCompatible(ShardedCheckpoint reference, String referenceRole, ShardedCheckpoint base,
            List<ShardedCheckpoint> models) {
        Set<String> expected = new HashSet<>(reference.names());
        for (int i = 0; i < models.size(); i++) {
            ShardedCheckpoint model = models.get(i);
            if (model == reference) {
                continue;
            }
            String role = "model " + (i + 1) + " (" + spec.models().get(i).path() + ")";
            for (String name : reference.names()) {
                if (!model.contains(name)) {
                    throw new KilnException("merge: tensor '" + name + "' of " + referenceRole
                            + " is missing from " + role);
                }
                TensorInfo want = reference.info(name);
                TensorInfo got = model.info(name);
                if (!Arrays.equals(want.shape(), got.shape())) {
                    throw new KilnException("merge: tensor '" + name + "' has shape " + Arrays.toString(got.shape())
                            + " in " + role + " but shape " + Arrays.toString(want.shape()) + " in "
                            + referenceRole);
                }
                if (want.dtype() != got.dtype()) {
                    throw new KilnException("merge: tensor '" + name + "' has dtype " + got.dtype() + " in " + role
                            + " but dtype " + want.dtype() + " in " + referenceRole);
                }
            }
            for (String name : model.names()) {
                if (!expected.contains(name)) {
                    throw new KilnException("merge: tensor '" + name + "' of " + role + " is missing from "
                            + referenceRole);
                }
            }
        }
    }

    private Map<String, Object> merge(ShardedCheckpoint base, List<ShardedCheckpoint> models,
            ShardedCheckpoint reference, List<String> names, long started) {
        List<TensorSpec> specs = new ArrayList<>();
        long bytesIn = 0;
        for (String name : names) {
            TensorInfo info = reference.info(name);
            DType out = info.dtype().isFloating() && spec.outputDtype() != null ? spec.outputDtype() : info.dtype();
            specs.add(new TensorSpec(name, out, info.shape()));
            bytesIn += info.byteLength() * (models.size() + (base != null ? 1 : 0));
        }
        Map<String, String> metadata = metadata(models);
        Path produced = producedFile(spec.output(), spec.maxShardBytes());
        try {
            Files.createDirectories(spec.output().toAbsolutePath().getParent());
        } catch (IOException e) {
            throw new KilnException("merge: cannot create the output folder of " + spec.output() + ": " + e, e);
        }
        Output output = spec.maxShardBytes() > 0
                ? new Output(null, ShardedCheckpointWriter.create(spec.output().toAbsolutePath().getParent(),
                        stem(spec.output()), spec.maxShardBytes(), metadata, specs))
                : new Output(SafetensorsWriter.create(spec.output(), metadata, specs), null);
        Map<String, Map<String, Object>> perTensor = new LinkedHashMap<>();
        long commitNanos = 0;
        // With several merge threads the pool is the parallelism: libtorch's intra-op threads on top would
        // oversubscribe the cores, and its OpenMP workers spin-wait between the many small ops of a block (a quarter
        // of a ties merge's CPU time in a profile). libtorch reads the global setting when a new thread runs its
        // first op, so the pool's fresh threads run single-threaded; the caller's setting is restored afterwards.
        int intraOpBefore = 0;
        if (spec.threads() > 1) {
            Engine.getEngine("PyTorch"); // loads libtorch, which the thread calls need
            intraOpBefore = JniUtils.getNumThreads();
            JniUtils.setNumThreads(1);
        }
        ExecutorService pool = Executors.newFixedThreadPool(spec.threads(), runnable -> {
            Thread t = new Thread(runnable, "kiln-merge");
            t.setDaemon(true);
            return t;
        });
        try (output) {
            if (trim != null && trim.trimScope() == MagnitudeTrim.TrimScope.MODEL) {
                modelRanks = findModelRanks(base, models, reference, names, pool);
            }
            CompletionService<Map<String, Object>> done = new ExecutorCompletionService<>(pool);
            List<Future<Map<String, Object>>> futures = new ArrayList<>();
            // Largest tensors first: a tensor is merged by one thread, so a large one started last (a language
            // model's output head comes last in checkpoint order) would leave the other threads idle meanwhile.
            List<String> largestFirst = new ArrayList<>(names);
            largestFirst.sort(java.util.Comparator.comparingLong((String n) -> reference.info(n).elementCount())
                    .reversed());
            for (String name : largestFirst) {
                futures.add(done.submit(() -> mergeOne(name, base, models, reference, output)));
            }
            long lastProgress = System.nanoTime();
            long lastFlush = lastProgress;
            long bytesDone = 0;
            long perInput = base != null ? models.size() + 1 : models.size();
            for (int finished = 0; finished < names.size(); ) {
                Future<Map<String, Object>> next = done.poll(250, TimeUnit.MILLISECONDS);
                if (next != null) {
                    Map<String, Object> stats = unwrap(next);
                    String name = (String) stats.remove("name");
                    perTensor.put(name, stats);
                    bytesDone += reference.info(name).byteLength() * perInput;
                    finished++;
                }
                long now = System.nanoTime();
                if (now - lastFlush >= FLUSH_NANOS && finished < names.size()) {
                    // This thread only waits for the workers: it starts the output on its way to the disk meanwhile,
                    // so the commit's force does not wait for all of it at the end (0.4 s of a 3 s merge to this
                    // machine's disk).
                    lastFlush = now;
                    output.flushEarly();
                }
                if (now - lastProgress >= PROGRESS_NANOS && finished < names.size()) {
                    lastProgress = now;
                    progress(finished, names.size(), bytesDone, bytesIn, now - started);
                }
            }
            long committing = System.nanoTime();
            output.commit();
            commitNanos = System.nanoTime() - committing;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("merge interrupted", e);
        } finally {
            pool.shutdownNow();
            if (intraOpBefore > 0) {
                JniUtils.setNumThreads(intraOpBefore);
            }
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("method", spec.methodId());
        report.put("params", new java.util.TreeMap<>(spec.params()));
        report.put("output", produced.toString());
        report.put("kilnVersion", KilnVersion.get());
        report.put("seed", spec.seed());
        // Sorted by name so that the report does not depend on the order threads finished in.
        Map<String, Object> tensors = new LinkedHashMap<>();
        for (String name : names) {
            tensors.put(name, perTensor.get(name));
        }
        report.put("tensors", tensors);
        Map<String, Object> totals = new LinkedHashMap<>();
        totals.put("tensors", names.size());
        totals.put("bytesIn", bytesIn);
        totals.put("seconds", seconds);
        totals.put("gbPerSecond", seconds > 0 ? bytesIn / 1e9 / seconds : 0.0);
        // Forcing the output to disk and renaming it: bounded by the disk, not by the merge (reported apart).
        totals.put("commitSeconds", commitNanos / 1e9);
        totals.put("peakHeapBytes", peakHeap());
        totals.put("threads", spec.threads());
        report.put("totals", totals);
        try {
            AtomicFiles.writeString(reportFile(spec.output()),
                    Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(report));
        } catch (IOException e) {
            throw new KilnException("merge: cannot write the report " + reportFile(spec.output()) + ": " + e, e);
        }
        events.emit(Event.info(String.format("Merged %d tensors of %d model(s) with %s in %.1f s (%.3f GB/s) into %s",
                names.size(), models.size(), spec.methodId(), seconds, (double) totals.get("gbPerSecond"),
                produced)));
        return report;
    }

    private void progress(int done, int total, long bytesDone, long bytesIn, long elapsedNanos) {
        double seconds = elapsedNanos / 1e9;
        double rate = seconds > 0 ? bytesDone / 1e9 / seconds : 0;
        double eta = bytesDone > 0 ? seconds * (bytesIn - bytesDone) / bytesDone : Double.NaN;
        Map<String, Object> data = new LinkedHashMap<>();
        data.put("tensorsDone", done);
        data.put("tensors", total);
        data.put("gbPerSecond", rate);
        data.put("etaSeconds", Double.isNaN(eta) ? null : eta);
        events.emit(Event.progress(String.format("merge: %d/%d tensors, %.3f GB/s, ETA %s", done, total, rate,
                Double.isNaN(eta) ? "?" : String.format("%.0f s", eta)), data));
    }

    private static Map<String, Object> unwrap(Future<Map<String, Object>> future) throws InterruptedException {
        try {
            return future.get();
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException r) {
                throw r;
            }
            if (cause instanceof Error err) {
                throw err;
            }
            throw new KilnException("merge failed: " + cause, cause);
        }
    }

    /** Merges one tensor name and writes it; returns its statistics (with its name under "name"). */
    private Map<String, Object> mergeOne(String name, ShardedCheckpoint base, List<ShardedCheckpoint> models,
            ShardedCheckpoint reference, Output output) {
        long t0 = System.nanoTime();
        TensorInfo info = reference.info(name);
        Map<String, Object> stats = new LinkedHashMap<>();
        stats.put("name", name);
        stats.put("numel", info.elementCount());
        stats.put("dtype", info.dtype().code());
        if (!info.dtype().isFloating()) {
            // Integer tensors (positions, masks, counters) have no meaningful average: keep the reference's bytes.
            List<ByteBuffer> chunks = reference.reader(name).mapChunks(name);
            output.write(name, chunks.toArray(new ByteBuffer[0]));
            stats.put("copied", true);
            stats.put("seconds", (System.nanoTime() - t0) / 1e9);
            return stats;
        }
        List<MagnitudeCuts.Block> plan = plan(name, info);
        if (modelRanks != null) {
            // Whole-model trimming: every float tensor, small ones too, is cut at the model-wide thresholds.
            int first = modelRanks.firstBlock().get(name);
            mergeBlocks(name, info, plan, base, models, output, stats, modelRanks.checked(),
                    b -> MagnitudeCuts.ranks(modelRanks.found(), modelRanks.counts(), first + b, modelRanks.numel()));
        } else if (plan.size() > 1 && trim != null) {
            long[][] counts = keepCounts(info.elementCount(), "tensor '" + name + "'");
            MagnitudeCuts.Found[][] found = MagnitudeCuts.find(plan, counts, source(base, models), null,
                    "tensor '" + name + "'");
            // Only a real search reads (and so checks) every block; "keep all" or "keep none" reads nothing.
            boolean checked = MagnitudeCuts.searches(counts, info.elementCount());
            mergeBlocks(name, info, plan, base, models, output, stats, checked,
                    b -> MagnitudeCuts.ranks(found, counts, b, info.elementCount()));
        } else if (plan.size() > 1 && method.elementwise()) {
            mergeBlocks(name, info, plan, base, models, output, stats, false, b -> null);
        } else {
            try (NDManager manager = NDManager.newBaseManager()) {
                Reader whole = (checkpoint, role) -> load(checkpoint, name, manager, role);
                NDArray baseArray = base == null ? null : whole.read(base, "the base model");
                List<NDArray> inputs = readModels(models, whole);
                List<NDArray> stat = readStatistics(whole);
                NDArray merged = mergeArrays(name, baseArray, inputs, stat, random(spec.seed(), name), null);
                long[] counts = countChanges(merged, baseArray, inputs);
                if (counts != null) {
                    putChangeStats(stats, counts, info.elementCount());
                }
                if (info.elementCount() * outputType(info).byteSize() <= Integer.MAX_VALUE) {
                    encode(merged, outputType(info), bytes -> output.write(name, bytes));
                } else {
                    output.write(name, merged);
                }
            }
        }
        stats.put("seconds", (System.nanoTime() - t0) / 1e9);
        return stats;
    }

    /** Reads one piece (a whole tensor or a block) of a checkpoint; {@code role} names it in errors. */
    @FunctionalInterface
    private interface Reader {
        NDArray read(ShardedCheckpoint checkpoint, String role);
    }

    /** Every model's piece, in model order. */
    private List<NDArray> readModels(List<ShardedCheckpoint> models, Reader reader) {
        List<NDArray> out = new ArrayList<>();
        for (int i = 0; i < models.size(); i++) {
            out.add(reader.read(models.get(i), modelRole(i)));
        }
        return out;
    }

    /** Every model's statistic piece (null for a model without one), in model order. */
    private List<NDArray> readStatistics(Reader reader) {
        List<NDArray> out = new ArrayList<>();
        for (int i = 0; i < spec.models().size(); i++) {
            ShardedCheckpoint s = statistics.isEmpty() ? null : statistics.get(i);
            out.add(s == null ? null : reader.read(s, statisticRole(i)));
        }
        return out;
    }

    private String statisticRole(int i) {
        return "the statistic " + spec.models().get(i).statistic() + " of " + modelRole(i);
    }

    /** Runs the method on loaded arrays; returns the result as float32, its shape checked. */
    private NDArray mergeArrays(String name, NDArray baseArray, List<NDArray> inputs, List<NDArray> stat,
            RandomGenerator random, MagnitudeRanks ranks) {
        List<ModelTensor> tensors = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            MergeSpec.ModelInput input = spec.models().get(i);
            tensors.add(new ModelTensor(inputs.get(i), input.weight(), input.overrides(), stat.get(i)));
        }
        NDArray merged = method.merge(new MergeInput(name, baseArray, List.copyOf(tensors), random, ranks));
        if (merged == null || !merged.getShape().equals(inputs.get(0).getShape())) {
            throw new KilnException("merge method '" + spec.methodId() + "' returned "
                    + (merged == null ? "nothing" : "shape " + merged.getShape()) + " for tensor '" + name
                    + "' of shape " + inputs.get(0).getShape());
        }
        if (merged.getDataType() != DataType.FLOAT32) {
            merged = merged.toType(DataType.FLOAT32, false);
        }
        return merged;
    }

    /**
     * {changed elements, sign-conflicted elements} of a merge with a base, or null without one. The temporaries (one
     * task vector and two masks per model) live on a sub-manager closed at once, so they do not add to the peak.
     */
    private static long[] countChanges(NDArray merged, NDArray baseArray, List<NDArray> inputs) {
        if (baseArray == null) {
            return null;
        }
        if (merged.size() <= EXACT_FLOAT_COUNT) {
            long[] counts = countChangesBySigns(merged, baseArray, inputs);
            if (counts != null) {
                return counts;
            }
        }
        return countChangesByMasks(merged, baseArray, inputs);
    }

    /** Sums of 0/1 float32 values are exact integers up to 2^24 elements. */
    private static final long EXACT_FLOAT_COUNT = 1L << 24;

    /**
     * {@link #countChanges} in float arithmetic only, or null when a count is not finite (NaN or infinite values,
     * which {@link #countChangesByMasks} counts): comparisons into boolean arrays and their counts cost three to four
     * times a float kernel on this CPU, and were a tenth of a TIES merge. {@code sign(merged - base)^2} is 1 exactly
     * where the merge changed the base. With {@code up = sign(largest - base)} and
     * {@code down = sign(smallest - base)},
     * {@code up >= down}, and the signs conflict (some model above the base, some below) exactly where
     * {@code up - down = 2}, so {@code max(up - down - 1, 0)} is 1 there and 0 elsewhere.
     */
    private static long[] countChangesBySigns(NDArray merged, NDArray baseArray, List<NDArray> inputs) {
        try (NDManager scratch = merged.getManager().newSubManager()) {
            NDArray step = merged.sub(baseArray);
            step.attach(scratch);
            float changed = step.signi().muli(step).sum().getFloat();
            NDArray[] extremes = extremes(inputs, scratch);
            NDArray largest = extremes[0];
            NDArray smallest = extremes[1];
            NDArray up = largest.sub(baseArray);
            up.attach(scratch);
            NDArray down = smallest.sub(baseArray);
            down.attach(scratch);
            NDArray conflict = up.signi().subi(down.signi()).subi(1f).maximum(0f);
            conflict.attach(scratch);
            float conflicts = conflict.sum().getFloat();
            if (!Float.isFinite(changed) || !Float.isFinite(conflicts)) {
                return null;
            }
            return new long[] {(long) changed, (long) conflicts};
        }
    }

    /** {@link #countChanges} with comparisons; right for any values, NaN and infinities included. */
    private static long[] countChangesByMasks(NDArray merged, NDArray baseArray, List<NDArray> inputs) {
        try (NDManager scratch = merged.getManager().newSubManager()) {
            // For floats x - y == 0 exactly when x == y (gradual underflow), so no difference array is needed.
            NDArray differs = merged.neq(baseArray);
            differs.attach(scratch);
            long changed = differs.countNonzero().getLong();
            // Some task vector is positive and some negative where the largest model value is above the base and
            // the smallest below it (again m - b > 0 exactly when m > b), which needs no task-vector arrays.
            NDArray[] extremes = extremes(inputs, scratch);
            NDArray largest = extremes[0];
            NDArray smallest = extremes[1];
            NDArray positive = largest.gt(baseArray);
            positive.attach(scratch);
            NDArray negative = smallest.lt(baseArray);
            negative.attach(scratch);
            NDArray both = positive.logicalAnd(negative);
            both.attach(scratch);
            long conflicts = both.countNonzero().getLong();
            return new long[] {changed, conflicts};
        }
    }

    /** {largest, smallest} of the models' values per element; new arrays live on {@code scratch}. */
    private static NDArray[] extremes(List<NDArray> inputs, NDManager scratch) {
        NDArray largest = inputs.get(0);
        NDArray smallest = inputs.get(0);
        for (int i = 1; i < inputs.size(); i++) {
            largest = largest.maximum(inputs.get(i));
            largest.attach(scratch);
            smallest = smallest.minimum(inputs.get(i));
            smallest.attach(scratch);
        }
        return new NDArray[] {largest, smallest};
    }

    private static void putChangeStats(Map<String, Object> stats, long[] counts, long elements) {
        stats.put("keptDensity", counts[0] / (double) Math.max(1, elements));
        stats.put("signConflict", counts[1] / (double) Math.max(1, elements));
    }

    /**
     * The row blocks a tensor is merged in: one block for a tensor of at most the block size (or without rows to
     * split), else blocks of whole rows of at most the block size (at least one row each).
     */
    List<MagnitudeCuts.Block> plan(String name, TensorInfo info) {
        long[] shape = info.shape();
        long numel = info.elementCount();
        long rows = shape.length == 0 ? 1 : shape[0];
        if (numel <= blockElements || rows <= 1) {
            return List.of(new MagnitudeCuts.Block(name, 0, rows, 0, numel));
        }
        long rowElements = numel / rows;
        long rowsPerBlock = Math.max(1, blockElements / Math.max(1, rowElements));
        List<MagnitudeCuts.Block> blocks = new ArrayList<>();
        for (long r0 = 0; r0 < rows; r0 += rowsPerBlock) {
            long r1 = Math.min(rows, r0 + rowsPerBlock);
            blocks.add(new MagnitudeCuts.Block(name, r0, r1, r0 * rowElements, (r1 - r0) * rowElements));
        }
        return blocks;
    }

    /** The counts each model keeps over a scope of {@code numel} elements, from the method (which validates them). */
    private long[][] keepCounts(long numel, String where) {
        long[][] counts = new long[spec.models().size()][];
        for (int i = 0; i < counts.length; i++) {
            counts[i] = trim.keepCounts(i, spec.models().get(i).overrides(), numel, where);
            for (long k : counts[i]) {
                if (k < 0 || k > numel) {
                    throw new KilnException("merge method '" + spec.methodId() + "' asked to keep " + k
                            + " of the " + numel + " task-vector entries of " + where + " for " + modelRole(i));
                }
            }
        }
        return counts;
    }

    /**
     * trim-scope=model: plans every float tensor's blocks in checkpoint order (the scope's flat order) and finds
     * every model's selections over all of them in passes that run the blocks on the merge pool.
     */
    private ModelRanks findModelRanks(ShardedCheckpoint base, List<ShardedCheckpoint> models,
            ShardedCheckpoint reference, List<String> names, ExecutorService pool) {
        List<MagnitudeCuts.Block> blocks = new ArrayList<>();
        Map<String, Integer> firstBlock = new java.util.HashMap<>();
        long numel = 0;
        for (String name : names) {
            TensorInfo info = reference.info(name);
            if (!info.dtype().isFloating()) {
                continue;
            }
            firstBlock.put(name, blocks.size());
            blocks.addAll(plan(name, info));
            numel += info.elementCount();
        }
        String where = "the whole model (trim-scope=model, " + numel + " float elements per model)";
        long[][] counts = keepCounts(numel, where);
        if (numel == 0) {
            return new ModelRanks(new MagnitudeCuts.Found[counts.length][0], counts, 0, firstBlock, false);
        }
        events.emit(Event.info("merge: ranking task-vector magnitudes over the whole model (trim-scope=model)"));
        MagnitudeCuts.Found[][] found = MagnitudeCuts.find(blocks, counts, source(base, models), pool, where);
        return new ModelRanks(found, counts, numel, firstBlock, MagnitudeCuts.searches(counts, numel));
    }

    /** Task-vector magnitudes {@code |model_i - base|} of a block, read from the inputs, for the threshold search. */
    private MagnitudeCuts.Source source(ShardedCheckpoint base, List<ShardedCheckpoint> models) {
        return new MagnitudeCuts.Source() {
            @Override
            public List<NDArray> magnitudes(MagnitudeCuts.Block block, NDManager manager) {
                // Flat reads: the search wants flat magnitudes, and a reshape and a flatten per input are native
                // calls that a 128K-element block notices.
                NDArray baseArray = loadFlat(base, block, manager, "the base model");
                List<NDArray> out = new ArrayList<>();
                for (int i = 0; i < models.size(); i++) {
                    NDArray model = loadFlat(models.get(i), block, manager, modelRole(i));
                    NDArray magnitude = model.sub(baseArray).abs();
                    model.close();
                    if (spec.allowNonFinite() && !Float.isFinite(magnitude.sum().getFloat())
                            && countNonFinite(magnitude) > 0) {
                        throw new KilnException("merge: tensor '" + block.tensor() + "': merge method '"
                                + spec.methodId() + "' ranks task-vector magnitudes, which needs finite values, but "
                                + modelRole(i) + " minus the base has NaN or infinite entries (allowNonFinite does"
                                + " not extend to magnitude trimming)");
                    }
                    out.add(magnitude);
                }
                baseArray.close();
                return out;
            }

            /**
             * The runs of each tensor are read with one array per input and one positional read per run, and their
             * magnitudes taken in two kernels per model: a sample of 256 runs per tensor cost about ten native calls
             * per run the other way, a few percent of a ties merge.
             */
            @Override
            public List<NDArray> runs(List<MagnitudeCuts.Run> runs, NDManager manager) {
                List<NDList> perModel = new ArrayList<>();
                for (int i = 0; i < models.size(); i++) {
                    perModel.add(new NDList());
                }
                for (int from = 0; from < runs.size(); ) {
                    String name = runs.get(from).block().tensor();
                    int to = from;
                    while (to < runs.size() && runs.get(to).block().tensor().equals(name)) {
                        to++;
                    }
                    long[] firsts = new long[to - from];
                    int[] counts = new int[to - from];
                    for (int j = from; j < to; j++) {
                        firsts[j - from] = runs.get(j).first();
                        counts[j - from] = runs.get(j).count();
                    }
                    NDArray baseRuns = toFloat(base.reader(name).readFlat(name, firsts, counts, manager));
                    for (int i = 0; i < models.size(); i++) {
                        NDArray m = toFloat(models.get(i).reader(name).readFlat(name, firsts, counts, manager));
                        perModel.get(i).add(m.sub(baseRuns).abs());
                        m.close();
                    }
                    baseRuns.close();
                    from = to;
                }
                List<NDArray> out = new ArrayList<>();
                for (NDList pieces : perModel) {
                    out.add(pieces.size() == 1 ? pieces.get(0) : NDArrays.concat(pieces));
                }
                return out;
            }
        };
    }

    private static NDArray toFloat(NDArray array) {
        if (array.getDataType() == DataType.FLOAT32) {
            return array;
        }
        NDArray f = array.toType(DataType.FLOAT32, false);
        array.close();
        return f;
    }

    /** A block's values: its rows, or the whole tensor when the block is the whole tensor. */
    private NDArray loadBlock(ShardedCheckpoint checkpoint, MagnitudeCuts.Block block, NDManager manager,
            String role) {
        return loadBlock(checkpoint, block, manager, role, true);
    }

    /** A block's values as a flat array, checked for NaN/Inf. */
    private NDArray loadFlat(ShardedCheckpoint checkpoint, MagnitudeCuts.Block block, NDManager manager, String role) {
        String name = block.tensor();
        return checkFinite(checkpoint.reader(name).readFlat(name, block.first(), block.elements(), manager), name,
                role);
    }

    /** {@link #loadBlock}, skipping the NaN/Inf check when {@code check} is false (the values were checked). */
    private NDArray loadBlock(ShardedCheckpoint checkpoint, MagnitudeCuts.Block block, NDManager manager,
            String role, boolean check) {
        String name = block.tensor();
        TensorInfo info = checkpoint.info(name);
        SafetensorsReader reader = checkpoint.reader(name);
        NDArray loaded = block.first() == 0 && block.elements() == info.elementCount() ? reader.read(name, manager)
                : reader.readRows(name, block.row0(), block.row1(), manager);
        return check ? checkFinite(loaded, name, role) : toFloat(loaded);
    }

    /**
     * Merges a tensor block by block ({@link #plan}), so memory holds one block per input instead of whole tensors.
     * Each merged block is written straight to its place in the output (the writer takes slices at byte offsets).
     * Each block gets its own random source derived from the seed, the tensor name and the block index, so the result
     * depends on the block size only for methods that draw random numbers; {@code ranks} gives a magnitude-trimming
     * method its block's share of the selections found beforehand (null for other methods); {@code checked} says
     * that search already checked the base and models for NaN/Inf.
     */
    private void mergeBlocks(String name, TensorInfo info, List<MagnitudeCuts.Block> plan, ShardedCheckpoint base,
            List<ShardedCheckpoint> models, Output output, Map<String, Object> stats, boolean checked,
            java.util.function.IntFunction<MagnitudeRanks> ranks) {
        DType outType = outputType(info);
        long outBytes = info.elementCount() * outType.byteSize();
        long changed = 0;
        long conflicts = 0;
        long position = 0;
        for (int b = 0; b < plan.size(); b++) {
            MagnitudeCuts.Block block = plan.get(b);
            try (NDManager manager = NDManager.newBaseManager()) {
                // The threshold search already read and checked the base and the models of a trimmed tensor.
                Reader unchecked = (checkpoint, role) -> loadBlock(checkpoint, block, manager, role, !checked);
                NDArray baseArray = base == null ? null : unchecked.read(base, "the base model");
                List<NDArray> inputs = readModels(models, unchecked);
                List<NDArray> stat = readStatistics((checkpoint, role) -> loadBlock(checkpoint, block, manager, role));
                NDArray merged = mergeArrays(name, baseArray, inputs, stat, plan.size() == 1
                        ? random(spec.seed(), name) : blockRandom(spec.seed(), name, b), ranks.apply(b));
                long[] counts = countChanges(merged, baseArray, inputs);
                if (counts != null) {
                    changed += counts[0];
                    conflicts += counts[1];
                }
                long at = position;
                position += encode(merged, outType, bytes -> output.writeSlice(name, at, bytes));
            }
        }
        if (position != outBytes) {
            throw new IllegalStateException("merged " + position + " bytes of tensor '" + name + "', expected "
                    + outBytes);
        }
        if (plan.size() > 1) {
            stats.put("blocks", plan.size());
        }
        if (base != null) {
            putChangeStats(stats, new long[] {changed, conflicts}, info.elementCount());
        }
    }

    private DType outputType(TensorInfo info) {
        return spec.outputDtype() != null ? spec.outputDtype() : info.dtype();
    }

    /** The random source of block {@code index} of a tensor: the tensor's own source mixed with the index. */
    static RandomGenerator blockRandom(long seed, String name, int index) {
        long z = random(seed, name).nextLong() + (index + 1L) * 0x9e3779b97f4a7c15L;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return new SplittableRandom(z ^ (z >>> 31));
    }

    /**
     * Hands {@code merged}'s bytes, stored as {@code target}, to {@code sink} and returns their count. F32, F16 and
     * F64 go straight from torch's memory (a direct buffer over the tensor, converted by the engine first if needed),
     * which avoids the heap copy and the JDK's cached temporary direct buffer that writing a heap buffer costs; BF16,
     * which the engine cannot hold, is rounded in Java into a direct buffer freed at once.
     */
    static long encode(NDArray merged, DType target, java.util.function.Consumer<ByteBuffer> sink) {
        if (target == DType.BF16) {
            ByteBuffer floats = merged.toByteBuffer(true).order(ByteOrder.nativeOrder());
            int n = floats.remaining() / 4;
            ByteBuffer out = ByteBuffer.allocateDirect(n * 2).order(ByteOrder.LITTLE_ENDIAN);
            try {
                for (int i = 0; i < n; i++) {
                    out.putShort(i * 2, FloatBits.floatToBf16(floats.getFloat(floats.position() + i * 4)));
                }
                sink.accept(out);
                return out.remaining();
            } finally {
                DirectBuffers.free(out);
            }
        }
        if (target.loadedType() == DataType.FLOAT32) {
            ByteBuffer bytes = merged.toByteBuffer(true).order(ByteOrder.LITTLE_ENDIAN);
            sink.accept(bytes);
            return bytes.remaining();
        }
        try (NDArray converted = merged.toType(target.loadedType(), false)) {
            ByteBuffer bytes = converted.toByteBuffer(true).order(ByteOrder.LITTLE_ENDIAN);
            sink.accept(bytes);
            return bytes.remaining();
        }
    }

    private NDArray load(ShardedCheckpoint checkpoint, String name, NDManager manager, String role) {
        return checkFinite(checkpoint.read(name, manager), name, role);
    }

    private NDArray checkFinite(NDArray loaded, String name, String role) {
        NDArray array = loaded;
        if (array.getDataType() != DataType.FLOAT32) {
            array = array.toType(DataType.FLOAT32, false);
            loaded.close();
        }
        if (!spec.allowNonFinite()) {
            // The sum of float32 values is finite whenever all of them are (a NaN or an infinity makes it NaN or
            // infinite), so one reduction clears the usual case; only a non-finite sum, which a huge but finite
            // tensor may also give, pays for the exact count.
            if (!Float.isFinite(array.sum().getFloat())) {
                long bad = countNonFinite(array);
                if (bad > 0) {
                    throw new KilnException("merge: tensor '" + name + "' of " + role + " contains " + bad
                            + " NaN or infinite value(s); fix the checkpoint or set allowNonFinite");
                }
            }
        }
        return array;
    }

    /** NaN and infinite elements of a float32 array; the temporaries are freed at once. */
    private static long countNonFinite(NDArray array) {
        try (NDManager scratch = array.getManager().newSubManager()) {
            NDArray nan = array.isNaN();
            nan.attach(scratch);
            NDArray inf = array.isInfinite();
            inf.attach(scratch);
            NDArray either = nan.logicalOr(inf);
            either.attach(scratch);
            return either.countNonzero().getLong();
        }
    }

    /**
     * A random source for one tensor that depends only on the seed and the tensor's name (a SplitMix-style mix of
     * the seed with a 64-bit hash of the UTF-8 name).
     */
    static RandomGenerator random(long seed, String name) {
        long h = 0xcbf29ce484222325L;
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xff)) * 0x100000001b3L;
        }
        long z = seed * 0x9e3779b97f4a7c15L + h;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return new SplittableRandom(z ^ (z >>> 31));
    }

    private Map<String, String> metadata(List<ShardedCheckpoint> models) {
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("kiln.version", KilnVersion.get());
        metadata.put("kiln.merge.method", spec.methodId());
        try {
            metadata.put("kiln.merge.params", Json.MAPPER.writeValueAsString(new java.util.TreeMap<>(spec.params())));
            List<Map<String, Object>> inputs = new ArrayList<>();
            if (spec.base() != null) {
                inputs.add(describe("base", spec.base(), 1.0, Map.of()));
            }
            for (MergeSpec.ModelInput m : spec.models()) {
                Map<String, Object> d = describe("model", m.path(), m.weight(), m.overrides());
                if (m.statistic() != null) {
                    d.put("statistic", m.statistic().toString());
                }
                inputs.add(d);
            }
            metadata.put("kiln.merge.inputs", Json.MAPPER.writeValueAsString(inputs));
        } catch (IOException e) {
            throw new KilnException("merge: cannot encode the output metadata: " + e, e);
        }
        metadata.put("kiln.merge.seed", Long.toString(spec.seed()));
        return metadata;
    }

    private static Map<String, Object> describe(String role, Path path, double weight, Map<String, Double> params) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("role", role);
        d.put("path", path.toString());
        d.put("bytes", sizeOf(path));
        d.put("weight", weight);
        if (!params.isEmpty()) {
            d.put("params", new java.util.TreeMap<>(params));
        }
        return d;
    }

    /** Bytes of a checkpoint: the file, or every file directly in its folder. */
    static long sizeOf(Path path) {
        try {
            if (Files.isDirectory(path)) {
                try (var files = Files.list(path)) {
                    return files.filter(Files::isRegularFile).mapToLong(p -> {
                        try {
                            return Files.size(p);
                        } catch (IOException e) {
                            return 0;
                        }
                    }).sum();
                }
            }
            return Files.size(path);
        } catch (IOException e) {
            return -1;
        }
    }

    private static long peakHeap() {
        long peak = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP && pool.getPeakUsage() != null) {
                peak += pool.getPeakUsage().getUsed();
            }
        }
        return peak;
    }

    /** One file or a sharded set; writes are serialised because the writers are not meant for concurrent use. */
    private static final class Output implements AutoCloseable {
        private final SafetensorsWriter single;
        private final ShardedCheckpointWriter sharded;

        Output(SafetensorsWriter single, ShardedCheckpointWriter sharded) {
            this.single = single;
            this.sharded = sharded;
        }

        synchronized void write(String name, NDArray array) {
            if (single != null) {
                single.write(name, array);
            } else {
                sharded.write(name, array);
            }
        }

        synchronized void write(String name, ByteBuffer... chunks) {
            if (single != null) {
                single.write(name, chunks);
            } else {
                sharded.write(name, chunks);
            }
        }

        /** Sends the bytes written so far to the disk while the merge goes on; not serialised with the writes. */
        void flushEarly() {
            if (single != null) {
                single.flushEarly();
            } else {
                sharded.flushEarly();
            }
        }

        /** Writes part of a tensor at a byte offset; not serialised (the writer locks only its bookkeeping). */
        void writeSlice(String name, long offset, ByteBuffer bytes) {
            if (single != null) {
                single.writeSlice(name, offset, bytes);
            } else {
                sharded.writeSlice(name, offset, bytes);
            }
        }

        synchronized void commit() {
            if (single != null) {
                single.commit();
            } else {
                sharded.commit();
            }
        }

        @Override
        public synchronized void close() {
            if (single != null) {
                single.close();
            } else {
                sharded.close();
            }
        }
    }
}
