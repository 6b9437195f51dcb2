package dev.kiln.core.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MagnitudeCut;
import dev.kiln.spi.merge.MagnitudeRanks;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;

/**
 * Finds the exact k-th largest task-vector magnitude of each model over a scope (one tensor, or all float tensors of
 * a model) that is too large to hold at once, by streaming it in blocks.
 *
 * <p>The search is a sample-select (Floyd and Rivest): a small sample of magnitudes read from evenly spaced runs of
 * the scope gives two pivots {@code lo <= hi} that bracket the k-th largest with high probability; one pass over the
 * blocks then counts the elements above {@code hi} and equal to each pivot and collects the few elements strictly
 * between them, so the k-th largest is found by a top-k over those candidates. When the bracket misses (a sample
 * that was unlucky) or holds more candidates than {@link #CANDIDATE_BUDGET}, the known bounds narrow and another
 * pass samples inside them; every pass is NDArray work per block, and only counts and pivots cross to Java.
 *
 * <p>A pass normally counts only the elements above {@code hi} and at or above {@code lo} and collects the closed band
 * {@code [lo, hi]} (two comparisons, two counts, one exclusive-or and one masked select per block); only when that band
 * is too large to hold (many elements equal to a pivot) does the next pass, with the same pivots, count the elements
 * equal to each pivot and collect the open band {@code (lo, hi)} instead.
 *
 * <p>Besides the threshold, each selection records how many elements equal to it lie in every block, so that a block
 * merged later knows how many equal elements come before it in flat order: with that the blocked selection is the
 * whole-scope selection (largest first, equal magnitudes in flat index order) element for element.
 */
final class MagnitudeCuts {

    /** Most candidate elements (all requests of one search together) held between passes: 32 MiB of float32. */
    static final long CANDIDATE_BUDGET = 8L << 20;

    /** Sample size for the first bracket. */
    static final int SAMPLE = 1 << 16;

    /** Most elements per contiguous run of the first sample: long runs keep the number of reads small. */
    static final int RUN = 256;

    /** More passes than this means the magnitudes are not ordered floats (NaN); the search gives up. */
    static final int MAX_ROUNDS = 40;

    /** Rows [row0, row1) of a tensor, {@code elements} values starting at flat element {@code first} of it. */
    record Block(String tensor, long row0, long row1, long first, long elements) {
    }

    /** Where the magnitudes come from: the pipeline reads the inputs and computes {@code |model_i - base|}. */
    interface Source {
        /** Every model's magnitudes over the block, flat float32 on {@code manager}; null for a model not asked. */
        List<NDArray> magnitudes(Block block, NDManager manager);

        /** Every model's magnitudes of all {@code runs}, one after another in one flat array per model. */
        List<NDArray> runs(List<Run> runs, NDManager manager);
    }

    /** {@code count} elements from flat element {@code first} of the block's tensor: a piece of a sample. */
    record Run(Block block, long first, int count) {
    }

    /**
     * One model's selection of the k largest and, per block, the elements equal to the threshold before it (one more
     * entry at the end: all of them), so block b holds {@code equalBefore[b + 1] - equalBefore[b]}.
     */
    record Found(MagnitudeCut cut, long[] equalBefore) {
    }

    private MagnitudeCuts() {
    }

    /**
     * The selections {@code counts[m][j]} (the k largest of model m's magnitudes) over the blocks, which together
     * are the scope in flat order.
     *
     * @param pool runs the blocks of a pass in parallel; null runs them in this thread
     * @param what names the scope in errors
     * @return {@code found[m][j]} for {@code counts[m][j]}
     */
    static Found[][] find(List<Block> blocks, long[][] counts, Source source, ExecutorService pool, String what) {
        return find(blocks, counts, source, pool, what, SAMPLE, CANDIDATE_BUDGET);
    }

    /** {@link #find} with a chosen sample size and candidate budget (tests shrink both to force extra passes). */
    static Found[][] find(List<Block> blocks, long[][] counts, Source source, ExecutorService pool, String what,
            int sampleSize, long budget) {
        long numel = 0;
        long[] starts = new long[blocks.size()];
        for (int b = 0; b < blocks.size(); b++) {
            starts[b] = numel;
            numel += blocks.get(b).elements();
        }
        List<Request> open = new ArrayList<>();
        Found[][] found = new Found[counts.length][];
        for (int m = 0; m < counts.length; m++) {
            found[m] = new Found[counts[m].length];
            for (int j = 0; j < counts[m].length; j++) {
                long k = counts[m][j];
                if (k <= 0 || k >= numel) {
                    // Nothing or everything: no threshold to find.
                    found[m][j] = new Found(new MagnitudeCut(k, numel, 0f, 0), new long[blocks.size() + 1]);
                } else {
                    open.add(new Request(m, j, k, numel));
                }
            }
        }
        if (open.isEmpty()) {
            return found;
        }
        // A large scope (a whole model) gets a larger first sample: the band between the pivots shrinks with the
        // square root of the sample, and must stay under the candidate budget for one pass to settle the threshold.
        int first = numel > (64L << 20) && sampleSize == SAMPLE ? SAMPLE * 4 : sampleSize;
        firstSample(blocks, starts, numel, open, source, first);
        for (int round = 0; !open.isEmpty(); round++) {
            if (round >= MAX_ROUNDS) {
                throw new KilnException(what + ": could not find the magnitude threshold of model "
                        + (open.get(0).model + 1) + " in " + MAX_ROUNDS + " passes; are there NaN values?");
            }
            for (Request r : open) {
                if (!r.exact) {
                    r.pivots();
                }
            }
            Stats[] perBlock = pass(blocks, open, source, pool, budget);
            List<Request> next = new ArrayList<>();
            for (int q = 0; q < open.size(); q++) {
                Request r = open.get(q);
                Found f = r.resolve(perBlock, q);
                if (f != null) {
                    found[r.model][r.index] = f;
                } else {
                    next.add(r);
                }
            }
            List<Request> fresh = new ArrayList<>();
            for (Request r : next) {
                if (!r.exact) {
                    fresh.add(r);
                }
            }
            if (!fresh.isEmpty()) {
                resample(blocks, fresh, source, pool, sampleSize);
            }
            open = next;
        }
        return found;
    }

    /** A selection being searched: the k-th largest lies strictly inside (a, b). */
    private static final class Request {
        final int model;
        final int index;
        final long k;
        final long numel;
        /** Open interval known to hold the threshold, and the elements at or above b, and strictly inside. */
        float a = Float.NEGATIVE_INFINITY;
        float b = Float.POSITIVE_INFINITY;
        long atOrAboveB;
        long inside;
        /** Magnitudes sampled from (a, b), sorted largest first. */
        float[] sample;
        float lo;
        float hi;
        /**
         * Whether this pass counts the elements equal to each pivot and collects the open band (lo, hi), because the
         * closed band [lo, hi] of the last pass was too large to hold; the pivots stay as they were.
         */
        boolean exact;

        Request(int model, int index, long k, long numel) {
            this.model = model;
            this.index = index;
            this.k = k;
            this.numel = numel;
            this.inside = numel;
        }

        /** Picks lo <= hi around the sample's estimate of the threshold's rank, a few standard deviations apart. */
        void pivots() {
            int s = sample.length;
            if (s == 0) {
                throw new IllegalStateException("empty sample inside (" + a + ", " + b + ")");
            }
            long wanted = k - atOrAboveB;
            double q = wanted / (double) inside;
            double rank = q * s;
            // Four standard deviations of the sample rank, but never more than an eighth of the sample, so a pass
            // that does not pin the threshold down still narrows the interval to about a quarter of itself.
            double spread = Math.min(Math.max(8, 4 * Math.sqrt(s * q * (1 - q)) + 4), s / 8.0);
            int hiAt = (int) Math.max(0, Math.min(s - 1, Math.floor(rank - spread)));
            int loAt = (int) Math.max(0, Math.min(s - 1, Math.ceil(rank + spread)));
            hi = sample[hiAt];
            lo = sample[loAt];
        }

        /** The selection, or null after narrowing (a, b) when this pass did not pin the threshold down. */
        Found resolve(Stats[] perBlock, int q) {
            long above = 0;
            long equalHi = 0;
            long between = 0;
            long equalLo = 0;
            boolean collected = true;
            for (Stats s : perBlock) {
                above += s.above[q];
                equalHi += s.equalHi[q];
                between += s.between[q];
                equalLo += s.equalLo[q];
                collected &= s.candidates[q] != null || s.between[q] == 0;
            }
            long[] equal = new long[perBlock.length];
            if (!exact && lo < hi) {
                // between counts the closed band [lo, hi]; equalHi and equalLo were not counted.
                if (k <= above) {
                    inside = above - atOrAboveB;
                    a = hi;
                    return null;
                }
                if (k > above + between) {
                    inside -= above + between - atOrAboveB;
                    b = lo;
                    atOrAboveB = above + between;
                    return null;
                }
                if (!collected) {
                    exact = true;
                    return null;
                }
                return fromCandidates(perBlock, q, above, k - above, equal);
            }
            exact = false;
            if (k <= above) {
                inside = above - atOrAboveB;
                a = hi;
                return null;
            }
            if (k <= above + equalHi) {
                for (int i = 0; i < perBlock.length; i++) {
                    equal[i] = perBlock[i].equalHi[q];
                }
                return found(hi, k - above, equal);
            }
            if (k <= above + equalHi + between) {
                if (!collected) {
                    a = lo;
                    b = hi;
                    atOrAboveB = above + equalHi;
                    inside = between;
                    return null;
                }
                return fromCandidates(perBlock, q, above + equalHi, k - above - equalHi, equal);
            }
            long belowLo = above + equalHi + between;
            if (lo < hi && k <= belowLo + equalLo) {
                for (int i = 0; i < perBlock.length; i++) {
                    equal[i] = perBlock[i].equalLo[q];
                }
                return found(lo, k - belowLo, equal);
            }
            long atOrAboveLo = lo < hi ? belowLo + equalLo : above + equalHi;
            inside -= atOrAboveLo - atOrAboveB;
            b = lo;
            atOrAboveB = atOrAboveLo;
            return null;
        }

        /**
         * The threshold as the {@code rank}-th largest of the collected candidates, {@code larger} elements of the
         * scope being larger than every candidate.
         */
        private Found fromCandidates(Stats[] perBlock, int q, long larger, long rank, long[] equal) {
            int total = 0;
            for (Stats s : perBlock) {
                total += s.candidates[q] == null ? 0 : s.candidates[q].length;
            }
            float[] all = new float[total];
            // ends[i]: where block i's candidates end in `all`, so per-block counts come from one cumulative sum.
            long[] ends = new long[perBlock.length];
            int at = 0;
            for (int i = 0; i < perBlock.length; i++) {
                float[] c = perBlock[i].candidates[q];
                if (c != null) {
                    System.arraycopy(c, 0, all, at, c.length);
                    at += c.length;
                }
                ends[i] = at;
            }
            try (NDManager manager = NDManager.newBaseManager()) {
                NDArray candidates = manager.create(all);
                float t;
                try (NDList top = candidates.topK((int) rank, 0, true, false)) {
                    t = top.get(0).min().getFloat();
                }
                long aboveT = larger + candidates.gt(t).countNonzero().getLong();
                // The equal ones per block in a few native calls for the whole scope, not a few per block (a
                // tensor has hundreds of blocks): running counts read at each block's end.
                long[] running = new long[perBlock.length];
                if (total > 0) {
                    NDArray counts = candidates.eq(t).toType(DataType.INT64, false).cumSum(0);
                    long[] at1 = new long[perBlock.length];
                    for (int i = 0; i < perBlock.length; i++) {
                        at1[i] = Math.max(0, ends[i] - 1);
                    }
                    running = counts.get(manager.create(at1)).toLongArray();
                }
                for (int i = 0; i < perBlock.length; i++) {
                    long upTo = ends[i] == 0 ? 0 : running[i];
                    long before = i == 0 || ends[i - 1] == 0 ? 0 : running[i - 1];
                    equal[i] = upTo - before;
                }
                return found(t, k - aboveT, equal);
            }
        }

        private Found found(float threshold, long quota, long[] equalPerBlock) {
            long[] before = new long[equalPerBlock.length + 1];
            long sum = 0;
            for (int i = 0; i < equalPerBlock.length; i++) {
                before[i] = sum;
                sum += equalPerBlock[i];
            }
            before[equalPerBlock.length] = sum;
            return new Found(new MagnitudeCut(k, numel, threshold, quota), before);
        }
    }

    /**
     * One block's counts for every open request, and its candidates. Candidates are copied to the Java heap at once:
     * held in native memory across a pass of hundreds of blocks, these small long-lived arrays sat between the blocks'
     * large short-lived temporaries and kept the native allocator from reusing their space (a whole-model pass of the
     * 3 x 1.5 GB benchmark grew to 1.5 GB resident that way).
     */
    private static final class Stats {
        final long[] above;
        final long[] equalHi;
        final long[] between;
        final long[] equalLo;
        final float[][] candidates;

        Stats(int requests) {
            above = new long[requests];
            equalHi = new long[requests];
            between = new long[requests];
            equalLo = new long[requests];
            candidates = new float[requests][];
        }
    }

    /** One counting pass over every block. */
    private static Stats[] pass(List<Block> blocks, List<Request> open, Source source, ExecutorService pool,
            long budget) {
        Stats[] out = new Stats[blocks.size()];
        // Candidates are kept only while the running total stays within the budget, so a bracket that turned out
        // too wide costs another pass, never unbounded memory. Which blocks got to keep theirs may depend on thread
        // timing, but only whether the pass pins the threshold down, never the threshold.
        long share = Math.max(1, budget / open.size());
        java.util.concurrent.atomic.AtomicLongArray held = new java.util.concurrent.atomic.AtomicLongArray(
                open.size());
        runAll(blocks.size(), pool, b -> {
            Stats s = new Stats(open.size());
            try (NDManager scratch = NDManager.newBaseManager()) {
                List<NDArray> magnitudes = source.magnitudes(blocks.get(b), scratch);
                for (int q = 0; q < open.size(); q++) {
                    Request r = open.get(q);
                    NDArray x = magnitudes.get(r.model);
                    try (NDManager step = scratch.newSubManager()) {
                        x.tempAttach(step);
                        if (!r.exact && r.lo < r.hi) {
                            // The band [lo, hi] is taken whole (a block's worth at most, freed with the step) and
                            // its size is its count; the elements above hi are the rest of those not at most hi.
                            // Few native calls per block matter: blocks are small (128K elements), so a call's
                            // fixed cost is a good part of a kernel's. Indexing with the mask, not booleanMask:
                            // DJL's booleanMask took 2.0 ms per 1M elements against 0.45 ms here.
                            NDArray atMostHi = x.lte(r.hi);
                            s.above[q] = x.size() - count(atMostHi);
                            NDArray band = x.get(x.gte(r.lo).logicalAnd(atMostHi));
                            s.between[q] = band.size();
                            if (s.between[q] > 0 && held.addAndGet(q, s.between[q]) <= share) {
                                s.candidates[q] = band.toFloatArray();
                            }
                            continue;
                        }
                        s.above[q] = count(x.gt(r.hi));
                        s.equalHi[q] = count(x.eq(r.hi));
                        if (r.lo < r.hi) {
                            s.equalLo[q] = count(x.eq(r.lo));
                            NDArray between = x.gt(r.lo).logicalAnd(x.lt(r.hi));
                            s.between[q] = count(between);
                            if (s.between[q] > 0 && held.addAndGet(q, s.between[q]) <= share) {
                                s.candidates[q] = x.get(between).toFloatArray();
                            }
                        }
                    }
                }
            }
            out[b] = s;
        });
        return out;
    }

    /**
     * A fresh sample of each request's (a, b): every element inside, thinned by a stride so about {@link #SAMPLE}
     * remain in all.
     */
    private static void resample(List<Block> blocks, List<Request> open, Source source, ExecutorService pool,
            int sampleSize) {
        float[][][] parts = new float[open.size()][blocks.size()][];
        runAll(blocks.size(), pool, b -> {
            try (NDManager manager = NDManager.newBaseManager()) {
                List<NDArray> magnitudes = source.magnitudes(blocks.get(b), manager);
                for (int q = 0; q < open.size(); q++) {
                    Request r = open.get(q);
                    NDArray x = magnitudes.get(r.model);
                    long stride = Math.max(1, r.inside / sampleSize);
                    NDArray in = x.get(x.gt(r.a).logicalAnd(x.lt(r.b)));
                    parts[q][b] = in.size() == 0 ? new float[0]
                            : in.get(new NDIndex("::{}", stride)).toFloatArray();
                }
            }
        });
        for (int q = 0; q < open.size(); q++) {
            int n = 0;
            for (float[] p : parts[q]) {
                n += p.length;
            }
            float[] all = new float[n];
            int at = 0;
            for (float[] p : parts[q]) {
                System.arraycopy(p, 0, all, at, p.length);
                at += p.length;
            }
            open.get(q).sample = descending(all);
        }
    }

    /** The first sample: {@link #SAMPLE} magnitudes in runs of {@link #RUN}, evenly spaced over the scope. */
    private static void firstSample(List<Block> blocks, long[] starts, long numel, List<Request> open, Source source,
            int sampleSize) {
        int run = (int) Math.max(1, Math.min(RUN, sampleSize / 16));
        int runs = (int) Math.max(1, Math.min(numel / run, sampleSize / run));
        List<Run> pieces = new ArrayList<>();
        for (int j = 0; j < runs; j++) {
            long at = j * numel / runs;
            int b = Arrays.binarySearch(starts, at);
            b = b >= 0 ? b : -b - 2;
            Block block = blocks.get(b);
            long within = at - starts[b];
            int count = (int) Math.min(run, block.elements() - within);
            pieces.add(new Run(block, block.first() + within, count));
        }
        try (NDManager manager = NDManager.newBaseManager()) {
            List<NDArray> sampled = source.runs(pieces, manager);
            for (Request r : open) {
                r.sample = descending(sampled.get(r.model).toType(DataType.FLOAT32, false).toFloatArray());
            }
        }
    }

    /** A sample sorted largest first (a sample is small: at most a few hundred thousand values). */
    private static float[] descending(float[] values) {
        float[] sorted = values.clone();
        Arrays.sort(sorted);
        for (int i = 0, j = sorted.length - 1; i < j; i++, j--) {
            float t = sorted[i];
            sorted[i] = sorted[j];
            sorted[j] = t;
        }
        return sorted;
    }

    private static long count(NDArray mask) {
        return mask.countNonzero().getLong();
    }

    /** Runs {@code work} for 0..n-1 on {@code pool} (or here), rethrowing the first failure. */
    private static void runAll(int n, ExecutorService pool, java.util.function.IntConsumer work) {
        if (pool == null) {
            for (int i = 0; i < n; i++) {
                work.accept(i);
            }
            return;
        }
        List<Future<?>> futures = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int index = i;
            futures.add(pool.submit(() -> work.accept(index)));
        }
        try {
            for (Future<?> f : futures) {
                f.get();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("merge interrupted", e);
        } catch (ExecutionException e) {
            for (Future<?> f : futures) {
                f.cancel(true);
            }
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            throw new KilnException("merge failed: " + e.getCause(), e.getCause());
        }
    }

    /**
     * Whether {@link #find} reads the scope for these counts: only a count strictly between 0 and the scope's size
     * needs a threshold (the pipeline relies on that pass having checked the inputs for NaN/Inf).
     */
    static boolean searches(long[][] counts, long numel) {
        for (long[] perModel : counts) {
            for (long k : perModel) {
                if (k > 0 && k < numel) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The ranks handed to a method for one block: the found cuts with that block's equal-before counts. */
    static MagnitudeRanks ranks(Found[][] found, long[][] counts, int block, long scopeElements) {
        return new MagnitudeRanks() {
            @Override
            public long scopeElements() {
                return scopeElements;
            }

            @Override
            public NDArray largest(int model, long k, NDArray magnitude) {
                Found f = declared(model, k);
                long[] before = f.equalBefore();
                return f.cut().select(magnitude, before[block], before[block + 1] - before[block]);
            }

            @Override
            public NDArray largestAsFloat(int model, long k, NDArray magnitude) {
                Found f = declared(model, k);
                long[] before = f.equalBefore();
                return f.cut().selectAsFloat(magnitude, before[block], before[block + 1] - before[block]);
            }

            private Found declared(int model, long k) {
                for (int j = 0; j < counts[model].length; j++) {
                    if (counts[model][j] == k) {
                        return found[model][j];
                    }
                }
                throw new IllegalStateException("model " + model + " asked for the " + k + " largest magnitudes, but"
                        + " declared only " + Arrays.toString(counts[model]));
            }
        };
    }
}
