package dev.kiln.core.lm.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.train.WarmupCosineSchedule;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * Byte-level next-token training of a {@link DecoderLm} in place: random windows of {@code seqLength + 1} bytes,
 * mean cross-entropy over every position, AdamW (decoupled decay on matrices only), global-norm gradient clipping and
 * a warm-up cosine learning rate. An optional skip policy is consulted once per step in {@link Phase#TRAIN}, so
 * layer dropout ({@code layerdrop}) drops whole blocks for the whole batch in that step.
 *
 * <p>The run is deterministic for a seed and a thread count: batch offsets and policy draws come from seeded
 * generators, and the weights start from the model's own seed.
 */
public final class LmTrainer {
    private LmTrainer() {
    }

    /**
     * Trains {@code model} on {@code text}.
     *
     * @param policy layer-dropout policy asked in {@code Phase.TRAIN}, or null to run every block
     * @param log progress lines, or null
     */
    public static LmTrainingResult train(DecoderLm model, byte[] text, LmTrainingConfig config, SkipPolicy policy,
            Consumer<String> log) {
        int t = config.seqLength();
        if (t > model.config().maxLength()) {
            throw new KilnException("lm training: seqLength " + t + " exceeds the model's maxLength "
                    + model.config().maxLength());
        }
        if (text == null || text.length < t + 2) {
            throw new KilnException("lm training: the training text has " + (text == null ? 0 : text.length)
                    + " bytes; seqLength " + t + " needs at least " + (t + 2));
        }
        Map<String, NDArray> weights = model.weights();
        SplittableRandom batches = new SplittableRandom(config.seed());
        SplittableRandom policyRandom = new SplittableRandom(config.seed() ^ 0x9E3779B97F4A7C15L);
        WarmupCosineSchedule schedule = new WarmupCosineSchedule(config.learningRate(), config.minLearningRate(),
                config.warmupSteps(), config.steps());
        ModelLayout layout = new ModelLayout(model.config().layers(), 0);
        List<Double> losses = new ArrayList<>(config.steps());
        long[] layersRun = new long[1];
        int skipped = 0;
        NDManager modelManager = weights.get("embed.weight").getManager();
        long started = System.nanoTime();
        for (NDArray w : weights.values()) {
            w.setRequiresGradient(true);
        }
        try (NDManager state = modelManager.newSubManager()) {
            Map<String, NDArray> first = new LinkedHashMap<>();
            Map<String, NDArray> second = new LinkedHashMap<>();
            for (Map.Entry<String, NDArray> e : weights.entrySet()) {
                first.put(e.getKey(), state.zeros(e.getValue().getShape()));
                second.put(e.getKey(), state.zeros(e.getValue().getShape()));
            }
            for (int step = 0; step < config.steps(); step++) {
                try (NDManager sm = modelManager.newSubManager()) {
                    int[] starts = new int[config.batchSize()];
                    for (int r = 0; r < starts.length; r++) {
                        starts[r] = batches.nextInt(text.length - t);
                    }
                    NDArray window = TrainingForward.tokens(sm, text, starts, t + 1);
                    NDArray inputs = window.get(":, :-1");
                    NDArray targets = window.get(":, 1:");
                    SkipSession session = null;
                    if (policy != null) {
                        session = policy.begin(layout, Phase.TRAIN, step, policyRandom);
                        if (session == null) {
                            throw new KilnException("skip policy " + policy.getClass().getName()
                                    + " returned no session");
                        }
                    }
                    double loss;
                    java.util.Set<String> used = new java.util.HashSet<>();
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray l = TrainingForward.trainingLoss(sm, model, inputs, targets, session, layersRun,
                                used);
                        gc.backward(l);
                        loss = l.getFloat();
                    }
                    if (!Double.isFinite(loss)) {
                        throw new KilnException("lm training: loss became " + loss + " at step " + step
                                + "; lower the learning rate (" + config.learningRate() + ")");
                    }
                    losses.add(loss);
                    if (!update(sm, weights, used, first, second, config, schedule.at(step), step)) {
                        skipped++;
                        if (log != null) {
                            log.accept("step " + (step + 1) + ": non-finite gradient norm, update skipped ("
                                    + skipped + " so far)");
                        }
                        if (skipped > Math.max(3, config.steps() / 20)) {
                            throw new KilnException("lm training: " + skipped + " steps up to step " + step
                                    + " had a non-finite gradient; lower the learning rate ("
                                    + config.learningRate() + ")");
                        }
                    }
                    if (log != null && config.logEvery() > 0
                            && (step % config.logEvery() == 0 || step == config.steps() - 1)) {
                        log.accept(String.format("step %d/%d loss %.4f lr %.2e %.1fs", step + 1, config.steps(),
                                loss, schedule.at(step), (System.nanoTime() - started) / 1e9));
                    }
                }
            }
        } finally {
            for (NDArray w : weights.values()) {
                w.setRequiresGradient(false);
            }
            model.refreshDerived();
        }
        return new LmTrainingResult(List.copyOf(losses), (System.nanoTime() - started) / 1e9, layersRun[0], skipped);
    }

    /**
     * One AdamW step with global-norm clipping. A weight the pass never read (its block was dropped) is not touched
     * at all, neither decayed nor moved by its momentum, as PyTorch's AdamW skips a parameter without a gradient.
     */
    private static boolean update(NDManager sm, Map<String, NDArray> weights, java.util.Set<String> used,
            Map<String, NDArray> first,
            Map<String, NDArray> second, LmTrainingConfig c, double lr, long step) {
        Map<String, NDArray> grads = new LinkedHashMap<>();
        NDArray sumSq = null;
        for (Map.Entry<String, NDArray> e : weights.entrySet()) {
            NDArray p = e.getValue();
            if (!used.contains(e.getKey()) || !p.hasGradient()) {
                continue;
            }
            NDArray g = TrainingForward.scoped(p.getGradient(), sm);
            grads.put(e.getKey(), g);
            NDArray sq = g.square().sum();
            sumSq = sumSq == null ? sq : sumSq.add(sq);
        }
        if (sumSq == null) {
            return true;
        }
        double scale = 1;
        double norm = Math.sqrt(sumSq.getFloat());
        if (!Double.isFinite(norm)) {
            // a non-finite gradient is dropped, not applied: the step is skipped (as mixed-precision scalers do)
            // and counted; the caller fails the run when it happens too often. (The NaNs once seen here came from
            // DJL scalar operands freed before backward; TrainingForward now keeps them alive, see GraphScalars.)
            for (Map.Entry<String, NDArray> e : grads.entrySet()) {
                JniUtils.zeroGrad((PtNDArray) weights.get(e.getKey()));
            }
            return false;
        }
        if (c.gradClip() > 0 && norm > c.gradClip()) {
            scale = c.gradClip() / norm;
        }
        long n = step + 1;
        double c1 = 1 - Math.pow(0.9, n);
        double c2 = 1 - Math.pow(0.95, n);
        for (Map.Entry<String, NDArray> e : grads.entrySet()) {
            NDArray p = weights.get(e.getKey());
            NDArray g = scale == 1 ? e.getValue() : e.getValue().mul((float) scale);
            NDArray m = first.get(e.getKey());
            NDArray v = second.get(e.getKey());
            m.muli(0.9f).addi(g.mul(0.1f));
            v.muli(0.95f).addi(g.square().muli(0.05f));
            if (c.weightDecay() > 0 && p.getShape().dimension() == 2) {
                p.muli((float) (1 - lr * c.weightDecay()));
            }
            NDArray denominator = TrainingForward.scoped(v.div((float) c2), sm).sqrt().addi(1e-8f);
            NDArray change = TrainingForward.scoped(m.mul((float) (lr / c1)), sm).divi(denominator);
            p.subi(change);
            // gradients accumulate across backward calls in DJL's PyTorch engine until zeroed
            JniUtils.zeroGrad((PtNDArray) p);
        }
        return true;
    }

    /**
     * Validation perplexity {@code exp(mean NLL per byte)} of the full model, teacher-forced in parallel over
     * non-overlapping windows: window {@code i} reads bytes {@code [i*T, i*T+T]} and predicts its last {@code T}.
     *
     * @param maxWindows at most this many windows from the start of {@code text} (0 for all)
     */
    public static double perplexity(DecoderLm model, byte[] text, int seqLength, int maxWindows, int batchSize) {
        int[] starts = windows(text, seqLength, maxWindows);
        double total = 0;
        NDManager modelManager = model.weights().get("embed.weight").getManager();
        for (int from = 0; from < starts.length; from += batchSize) {
            int[] part = java.util.Arrays.copyOfRange(starts, from, Math.min(starts.length, from + batchSize));
            try (NDManager sm = modelManager.newSubManager()) {
                NDArray window = TrainingForward.tokens(sm, text, part, seqLength + 1);
                NDArray logits = TrainingForward.logits(sm, model, window.get(":, :-1"), null, null, null);
                total += TrainingForward.nll(logits, window.get(":, 1:")).sum().toType(
                        ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
            }
        }
        return Math.exp(total / ((double) starts.length * seqLength));
    }

    /**
     * Validation perplexity under a skip policy, through the model's own cached decoding path
     * ({@link DecoderLm#forcedNll}): each window's first byte is the prompt and every later byte is fed as a decode
     * step, so the policy makes the same decisions as in generation. The windows and predicted bytes are those of
     * {@link #perplexity}; with a null policy both give the same value up to float rounding.
     */
    public static double policyPerplexity(DecoderLm model, byte[] text, int seqLength, int maxWindows, int batchSize,
            SkipPolicy policy, long seed) {
        int[] starts = windows(text, seqLength, maxWindows);
        double total = 0;
        for (int from = 0; from < starts.length; from += batchSize) {
            int rows = Math.min(batchSize, starts.length - from);
            int[][] seqs = new int[rows][seqLength + 1];
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i <= seqLength; i++) {
                    seqs[r][i] = text[starts[from + r] + i] & 0xFF;
                }
            }
            for (float[] stepNll : model.forcedNll(seqs, 1, policy, seed)) {
                for (float v : stepNll) {
                    total += v;
                }
            }
        }
        return Math.exp(total / ((double) starts.length * seqLength));
    }

    private static int[] windows(byte[] text, int seqLength, int maxWindows) {
        if (seqLength < 1) {
            throw new KilnException("perplexity: seqLength must be at least 1, got " + seqLength);
        }
        int count = text == null ? 0 : (text.length - 1) / seqLength;
        if (count < 1) {
            throw new KilnException("perplexity: the validation text has " + (text == null ? 0 : text.length)
                    + " bytes; seqLength " + seqLength + " needs at least " + (seqLength + 1));
        }
        if (maxWindows > 0) {
            count = Math.min(count, maxWindows);
        }
        int[] starts = new int[count];
        for (int i = 0; i < count; i++) {
            starts[i] = i * seqLength;
        }
        return starts;
    }
}
