package dev.kiln.merge;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MagnitudeRanks;
import dev.kiln.spi.merge.MagnitudeTrim;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.random.RandomGenerator;

/**
 * The task-vector family (mergekit's "generalized task arithmetic"): task-arithmetic, ties, dare and breadcrumbs
 * differ only in how each task vector is sparsified and whether a sign consensus filters the sum.
 *
 * <p>Per tensor: {@code tau_i = theta_i - base}; {@code s_i = sparsify(tau_i)}; {@code c_i = w_i * s_i}; with
 * consensus, {@code m_i = [sign(c_i) == elected sign]}, else {@code m_i = 1}; then
 * {@code theta = base + lambda * sum_i m_i c_i / (normalize ? sum_i w_i m_i : 1)}, a zero divisor counting as 1.
 */
class TaskVectorMerge implements MergeMethod {

    /** How each task vector is thinned before summing. */
    enum Sparsifier { NONE, MAGNITUDE, RANDOM, OUTLIERS }

    /** How DARE's random drop is compensated. */
    enum Rescale { INVERSE, L1, NONE }

    /** Where DARE's keep masks come from; replaceable so tests can check the arithmetic with known masks. */
    @FunctionalInterface
    interface KeepMasks {
        /** A boolean mask of {@code shape} whose elements are true with probability {@code density}. */
        NDArray draw(NDManager manager, Shape shape, double density, RandomGenerator random);
    }

    /**
     * Draws the mask on the tensors' device with the engine's generator, seeded from the merge's own random source.
     *
     * <p>DJL has no per-call generator, only the engine-wide seed; reseeding it is the only way to make an on-device
     * draw reproducible from {@link MergeInput#random()}. The seed-and-draw pair is therefore serialized on the
     * engine, so concurrent DARE merges take turns, and anything else drawing from the engine's generator in the
     * same JVM sees its sequence restarted. Masks are reproducible for one device type; CPU and GPU draws differ.
     */
    static final KeepMasks ENGINE_MASKS = (manager, shape, density, random) -> {
        long seed = random.nextLong();
        Engine engine = manager.getEngine();
        NDArray uniform;
        synchronized (engine) {
            engine.setRandomSeed((int) (seed ^ (seed >>> 32)));
            uniform = manager.randomUniform(0f, 1f, shape, DataType.FLOAT32);
        }
        return uniform.lt((float) density);
    };

    private final String id;
    private final Sparsifier sparsifier;
    private final boolean consensus;
    private final boolean countSigns;
    private final boolean normalize;
    private final double lambda;
    private final double density;
    private final double gamma;
    private final Rescale rescale;
    private final KeepMasks masks;

    /**
     * The magnitude-trimming members (ties, breadcrumbs): they declare their top-k selections so the core can find
     * them over a whole tensor or model in a first pass and then merge in row blocks.
     */
    static final class Trimmed extends TaskVectorMerge implements MagnitudeTrim {
        private final TrimScope scope;

        Trimmed(String id, Sparsifier sparsifier, boolean consensus, boolean countSigns, boolean normalize,
                double lambda, double density, double gamma, TrimScope scope) {
            super(id, sparsifier, consensus, countSigns, normalize, lambda, density, gamma, Rescale.NONE,
                    ENGINE_MASKS);
            if (sparsifier != Sparsifier.MAGNITUDE && sparsifier != Sparsifier.OUTLIERS) {
                throw new IllegalArgumentException(sparsifier + " does not trim by magnitude");
            }
            this.scope = scope;
        }

        @Override
        public TrimScope trimScope() {
            return scope;
        }

        @Override
        public long[] keepCounts(int model, Map<String, Double> overrides, long numel, String where) {
            return counts(model, overrides, numel, where);
        }
    }

    /** A task-vector merge that trims by magnitude, with the given trim scope. */
    static TaskVectorMerge trimmed(String id, Sparsifier sparsifier, boolean consensus, boolean countSigns,
            boolean normalize, double lambda, double density, double gamma, MagnitudeTrim.TrimScope scope) {
        return new Trimmed(id, sparsifier, consensus, countSigns, normalize, lambda, density, gamma, scope);
    }

    TaskVectorMerge(String id, Sparsifier sparsifier, boolean consensus, boolean countSigns, boolean normalize,
            double lambda, double density, double gamma, Rescale rescale, KeepMasks masks) {
        this.id = id;
        this.sparsifier = sparsifier;
        this.consensus = consensus;
        this.countSigns = countSigns;
        this.normalize = normalize;
        this.lambda = lambda;
        this.density = density;
        this.gamma = gamma;
        this.rescale = rescale;
        this.masks = masks;
    }

    @Override
    public boolean requiresBase() {
        return true;
    }

    /**
     * Without sparsification (task-arithmetic, with or without sign consensus) every step works on one element of the
     * task vectors, so the core may merge in row blocks. Magnitude pruning (ties, breadcrumbs) ranks the whole tensor
     * and is blocked through {@link MagnitudeTrim} instead. DARE with the inverse or no rescale is elementwise too:
     * each block draws its own mask from its own random source (the SPI's per-block source), so a large tensor's
     * masks depend on the block size but stay reproducible for a given seed and block size, and the drop
     * probability per element is the same. DARE's L1 rescale needs the whole task vector's norm, so it stays
     * whole-tensor.
     */
    @Override
    public boolean elementwise() {
        return sparsifier == Sparsifier.NONE || sparsifier == Sparsifier.RANDOM && rescale != Rescale.L1;
    }

    @Override
    public NDArray merge(MergeInput input) {
        try (Scope scope = Scope.open(id, input, true)) {
            NDArray base = scope.base();
            List<NDArray> contributions = new ArrayList<>();
            double[] weights = new double[scope.size()];
            for (int i = 0; i < scope.size(); i++) {
                weights[i] = scope.model(i).weight();
                NDArray tau = scope.tensor(i).sub(base);
                // Trimming makes several full-size temporaries per model (magnitudes, masks); giving them their
                // own manager, closed once the contribution exists, keeps one model's worth alive instead of all.
                try (NDManager step = scope.manager().newSubManager()) {
                    tau.attach(step);
                    NDArray contribution = scale(sparsify(scope, i, tau), weights[i]);
                    contribution.attach(scope.manager());
                    contributions.add(contribution);
                }
            }
            if (consensus) {
                return scope.finish(consensusMean(contributions, weights, base));
            }
            NDArray mixed = contributions.get(0);
            for (int i = 1; i < contributions.size(); i++) {
                mixed = mixed.add(contributions.get(i));
            }
            if (normalize) {
                double sum = 0;
                for (double w : weights) {
                    sum += w;
                }
                // The weights' sum is one number: a zero sum counts as 1, as the consensus divisor does.
                float divisor = (float) sum;
                mixed = mixed.div(divisor == 0f ? 1f : divisor);
            }
            return scope.finish(base.add(scale(mixed, lambda)));
        }
    }

    /**
     * The sign-consensus sum {@code base + lambda * sum_i m_i c_i / (normalize ? sum_i w_i m_i : 1)}, a zero divisor
     * counting as 1, in float arithmetic: on this CPU a comparison that makes a boolean array, or a boolean-to-float
     * conversion, costs three to four times a float add, and the comparison form of this step was most of a TIES
     * merge's time. With E the elected sign (+1 or -1), {@code c_i} agrees with it exactly when {@code c_i E > 0}, so
     * {@code p_i = max(c_i E, 0)} is {@code |c_i|} where it agrees and 0 elsewhere; then {@code sum_i m_i c_i =
     * E sum_i p_i} (negation is exact) and {@code m_i = sign(p_i)}. With positive weights the divisor is 0 only where
     * no model agrees, where the sum is 0 too, so dividing by {@code max(divisor, MIN_VALUE)} makes the zero divisor
     * count as 1 without a comparison; other weights can sum to 0 where models agree, which takes the comparison.
     */
    private NDArray consensusMean(List<NDArray> contributions, double[] weights, NDArray base) {
        NDArray elected = Selection.electedSign(contributions, countSigns);
        NDArray agreeing = null;
        NDArray divisor = null;
        for (int i = 0; i < contributions.size(); i++) {
            NDArray signed = contributions.get(i).mul(elected);
            NDArray part = signed.maximum(0f);
            signed.close();
            if (normalize) {
                NDArray agrees = part.sign();
                divisor = divisor == null ? scaleInPlace(agrees, weights[i]) : divisor.addi(scaleInPlace(agrees,
                        weights[i]));
            }
            agreeing = agreeing == null ? part : agreeing.addi(part);
        }
        NDArray mixed = agreeing.muli(elected);
        if (normalize) {
            NDArray safe = positive(weights) ? divisor.maximum(Float.MIN_VALUE)
                    : divisor.eq(0f).toType(DataType.FLOAT32, false).addi(divisor);
            mixed.divi(safe);
        }
        return scaleInPlace(mixed, lambda).addi(base);
    }

    /**
     * Whether every weight is positive as the float32 factor it is applied as (a weight below float32's smallest
     * value would become 0), which the comparison-free zero-divisor guard needs.
     */
    private static boolean positive(double[] weights) {
        for (double w : weights) {
            if (!((float) w > 0)) {
                return false;
            }
        }
        return true;
    }

    /** {@code x *= factor}, skipped for a factor of exactly 1 (see {@link #scale}); x must be this merge's own. */
    private static NDArray scaleInPlace(NDArray x, double factor) {
        return (float) factor == 1f ? x : x.muli((float) factor);
    }

    /**
     * {@code x * factor} in float32; a factor of exactly 1 returns {@code x} itself, which is the same value bit for
     * bit and saves a full pass over the block (weights and lambda are 1 in most recipes).
     */
    private static NDArray scale(NDArray x, double factor) {
        return (float) factor == 1f ? x : x.mul((float) factor);
    }

    /**
     * The k values of the magnitude selections of model {@code i} over {@code numel} elements: {@code {k}} for
     * magnitude pruning; for breadcrumbs {@code {numel - bottom, top}}, the elements not among the smallest and those
     * among the largest (outliers).
     */
    long[] counts(int i, Map<String, Double> overrides, long numel, String where) {
        double d = Scope.perModel(id, where, i, overrides, "density", density, 0, true, 1);
        if (sparsifier == Sparsifier.MAGNITUDE) {
            return new long[] {Selection.count(d, numel)};
        }
        double g = Scope.perModel(id, where, i, overrides, "gamma", gamma, 0, false, 1);
        long target = Selection.count(d, numel);
        long top = Selection.count(g, numel);
        long bottom = numel - target - top;
        if (bottom < 0) {
            // Not enough room for both cuts: keep the density and drop fewer of the largest (mergekit).
            top = numel - target;
            bottom = 0;
        }
        return new long[] {numel - bottom, top};
    }

    private NDArray sparsify(Scope scope, int i, NDArray tau) {
        switch (sparsifier) {
            case MAGNITUDE:
            case OUTLIERS: {
                MagnitudeRanks ranks = scope.input().ranks();
                if (ranks == null && this instanceof MagnitudeTrim t
                        && t.trimScope() == MagnitudeTrim.TrimScope.MODEL) {
                    throw new KilnException("tensor '" + scope.name() + "': merge method '" + id + "' with "
                            + "trim-scope=model ranks magnitudes over the whole model, which only the merge pipeline"
                            + " can do (it finds the thresholds in a first pass); no ranks were given");
                }
                long numel = ranks != null ? ranks.scopeElements() : tau.size();
                long[] k = counts(i, scope.model(i).overrides(), numel, "tensor '" + scope.name() + "'");
                if (sparsifier == Sparsifier.MAGNITUDE) {
                    if (k[0] >= numel) {
                        return tau;
                    }
                    NDArray magnitude = tau.abs();
                    requireFinite(scope, ranks, i, magnitude);
                    NDArray keep = ranks != null ? ranks.largestAsFloat(i, k[0], magnitude)
                            : Selection.largest(magnitude, k[0], scope.name()).toType(DataType.FLOAT32, false);
                    magnitude.close();
                    return keep.muli(tau);
                }
                long notSmall = k[0];
                long top = k[1];
                if (top == 0 && notSmall == numel) {
                    return tau;
                }
                NDArray magnitude = tau.abs();
                requireFinite(scope, ranks, i, magnitude);
                NDArray notTooSmall = largest(scope, ranks, i, magnitude, notSmall);
                NDArray tooLarge = largest(scope, ranks, i, magnitude, top);
                return tau.mul(notTooSmall.logicalAnd(tooLarge.logicalNot()).toType(DataType.FLOAT32, false));
            }
            case RANDOM: {
                double d = scope.perModel(i, "density", density, 0, true, 1);
                NDArray keep = masks.draw(scope.manager(), tau.getShape(), d, scope.input().random());
                return dropAndRescale(tau, keep, d, rescale);
            }
            default:
                return tau;
        }
    }

    /**
     * Magnitudes of NaN or infinite task-vector entries have no rank, so trimming refuses them whatever the caller
     * allows (the pipeline's blocked search refuses them the same way); one reduction per model and trimmed tensor.
     */
    private void requireFinite(Scope scope, MagnitudeRanks ranks, int i, NDArray magnitude) {
        if (ranks != null) {
            return; // the pipeline's search has already checked these blocks
        }
        // the sum overflows only for huge finite values too, so a non-finite sum is confirmed element-wise
        if (!Float.isFinite(magnitude.sum().getFloat())
                && (magnitude.isNaN().any().getBoolean() || magnitude.isInfinite().any().getBoolean())) {
            throw new KilnException("tensor '" + scope.name() + "': merge method '" + id + "' ranks task-vector"
                    + " magnitudes, which needs finite values, but model " + i + " minus the base has NaN or"
                    + " infinite entries (allowNonFinite does not extend to magnitude trimming)");
        }
    }

    /** The k largest of the scope: from the core's ranks when merging a block, else ranked here over the tensor. */
    private static NDArray largest(Scope scope, MagnitudeRanks ranks, int i, NDArray magnitude, long k) {
        return ranks != null ? ranks.largest(i, k, magnitude) : Selection.largest(magnitude, k, scope.name());
    }

    /** DARE's drop and compensation, separate from the mask draw so it can be checked with known masks. */
    static NDArray dropAndRescale(NDArray tau, NDArray keep, double density, Rescale rescale) {
        NDArray dropped = tau.mul(keep.toType(DataType.FLOAT32, false));
        switch (rescale) {
            case INVERSE:
                return dropped.div((float) density);
            case L1: {
                double before = tau.abs().sum().getFloat();
                double after = dropped.abs().sum().getFloat();
                // Nothing survived: there is no norm to restore, and the zero result is already right.
                return after > 0 ? dropped.mul((float) (before / after)) : dropped;
            }
            default:
                return dropped;
        }
    }
}
