package dev.kiln.core.lm;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;

/**
 * A byte-level (256 tokens) pre-LayerNorm decoder-only transformer written directly on NDArrays: learned position
 * embeddings, causal multi-head self-attention with a per-layer KV cache, tanh-GELU FFN, final LayerNorm and a tied
 * or separate output head.
 *
 * <p>Weights live in {@link #weights()} under HF-like names ({@code embed.weight}, {@code pos.weight},
 * {@code layers.{i}.ln1.weight}, {@code layers.{i}.attn.qkv.weight} (3D x D, rows q then k then v),
 * {@code layers.{i}.attn.out.weight}, {@code layers.{i}.ln2.weight}, {@code layers.{i}.ffn.up.weight},
 * {@code layers.{i}.ffn.down.weight}, each with a {@code .bias}, {@code norm.weight}/{@code norm.bias} and, when
 * untied, {@code head.weight}); linear weights are (out, in). They are initialised from a seed; training
 * ({@link dev.kiln.core.lm.train.LmTrainer}) writes into these arrays in place and then calls {@link #refreshDerived}.
 *
 * <p>Skipping: the policy is consulted per layer per pass (one prefill pass over the prompt, one decode pass per new
 * token). A skipped block or sub-block is the identity. A pass whose attention would read a cache entry that an
 * earlier pass never wrote fails with a {@link KilnException} naming the policy's broken rule, in both the cached and
 * the recomputing path, so a policy that breaks its declared {@link dev.kiln.spi.skip.KvCacheRule} cannot silently
 * change results.
 */
public final class DecoderLm implements AutoCloseable {
    /** Byte vocabulary. */
    public static final int VOCAB = 256;
    private static final float LN_EPS = 1e-5f;

    private final DecoderConfig config;
    private final NDManager manager;
    private final Map<String, NDArray> weights = new LinkedHashMap<>();
    // transposes made once: an op's result joins its first operand's manager, so w.transpose() per call would leak
    private final Map<String, NDArray> transposed = new LinkedHashMap<>();
    // low-rank linear weights run as two thin matmuls: weight name -> {V^T [in, r], U^T [r, out]}
    private final Map<String, NDArray[]> factored = new LinkedHashMap<>();
    private static final java.util.regex.Pattern LINEAR_WEIGHT = java.util.regex.Pattern.compile(
            "layers\\.\\d+\\.(attn\\.qkv|attn\\.out|ffn\\.up|ffn\\.down)\\.weight");

    /**
     * A model with seeded random weights: linear weights N(0, 1/fan_in), embeddings N(0, 1), LayerNorm gains 1 and
     * biases small.
     */
    public DecoderLm(DecoderConfig config, NDManager parent, long seed) {
        this.config = config;
        this.manager = parent.newSubManager();
        Random random = new Random(seed);
        int d = config.dim();
        int f = config.ffnDim();
        put("embed.weight", random, new Shape(VOCAB, d), 1.0, 0);
        put("pos.weight", random, new Shape(config.maxLength(), d), 0.5, 0);
        for (int i = 0; i < config.layers(); i++) {
            String p = "layers." + i + ".";
            put(p + "ln1.weight", random, new Shape(d), 0.1, 1);
            put(p + "ln1.bias", random, new Shape(d), 0.1, 0);
            put(p + "attn.qkv.weight", random, new Shape(3L * d, d), 1 / Math.sqrt(d), 0);
            put(p + "attn.qkv.bias", random, new Shape(3L * d), 0.1, 0);
            put(p + "attn.out.weight", random, new Shape(d, d), 1 / Math.sqrt(d), 0);
            put(p + "attn.out.bias", random, new Shape(d), 0.1, 0);
            put(p + "ln2.weight", random, new Shape(d), 0.1, 1);
            put(p + "ln2.bias", random, new Shape(d), 0.1, 0);
            put(p + "ffn.up.weight", random, new Shape(f, d), 1 / Math.sqrt(d), 0);
            put(p + "ffn.up.bias", random, new Shape(f), 0.1, 0);
            put(p + "ffn.down.weight", random, new Shape(d, f), 1 / Math.sqrt(f), 0);
            put(p + "ffn.down.bias", random, new Shape(d), 0.1, 0);
        }
        put("norm.weight", random, new Shape(d), 0.1, 1);
        put("norm.bias", random, new Shape(d), 0.1, 0);
        if (!config.tiedHead()) {
            put("head.weight", random, new Shape(VOCAB, d), 1 / Math.sqrt(d), 0);
        }
        refreshDerived();
    }

    private void put(String name, Random random, Shape shape, double std, double mean) {
        float[] values = new float[(int) shape.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) (mean + std * random.nextGaussian());
        }
        weights.put(name, manager.create(values, shape));
    }

    /** The configuration. */
    public DecoderConfig config() {
        return config;
    }

    /** The parameter arrays by name (read-only map; the arrays are the live weights). */
    public Map<String, NDArray> weights() {
        return Collections.unmodifiableMap(weights);
    }

    /**
     * Generates {@code maxNewTokens} tokens after each prompt.
     *
     * @param prompts {@code [batch][length]} byte tokens, every prompt the same non-zero length
     * @param maxNewTokens tokens to generate, at least 1
     * @param decoding greedy or seeded sampling; its seed also seeds the policy's random generator
     * @param policy skip policy, or null to run every block
     * @param useCache keep per-layer keys and values (one new position per decode pass) instead of recomputing the
     *     whole sequence every step; both give the same tokens and logits under the same decisions
     */
    public Generation generate(int[][] prompts, int maxNewTokens, Decoding decoding, SkipPolicy policy,
            boolean useCache) {
        return generateTimed(prompts, maxNewTokens, decoding, policy, useCache).generation();
    }

    /**
     * {@link #generate} that also reports the wall time of the prefill pass and of all decode passes, each pass
     * measured up to the point its logits are on the host (so asynchronous device work is included).
     */
    public TimedGeneration generateTimed(int[][] prompts, int maxNewTokens, Decoding decoding, SkipPolicy policy,
            boolean useCache) {
        int length = checkPrompts(prompts);
        if (maxNewTokens < 1) {
            throw new KilnException("maxNewTokens must be at least 1, got " + maxNewTokens);
        }
        // the last generated token is never fed back, so the model sees length + maxNewTokens - 1 positions
        int positions = length + maxNewTokens - 1;
        if (positions > config.maxLength()) {
            throw new KilnException("prompt length " + length + " plus " + maxNewTokens + " new tokens needs "
                    + positions + " positions; the model's maxLength is " + config.maxLength());
        }
        int batch = prompts.length;
        int[][] seq = new int[batch][length + maxNewTokens];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(prompts[b], 0, seq[b], 0, length);
        }
        return loop(seq, length, maxNewTokens, decoding, policy, useCache, null);
    }

    /**
     * Teacher-forced negative log-likelihoods under a skip policy: the first {@code promptLength} tokens of each
     * sequence are one prefill pass, then every later token is fed as if it had been generated (one decode pass
     * each, with the KV cache), so the policy takes exactly the decisions it would take while generating.
     *
     * @param sequences {@code [batch][length]} byte tokens, all the same length, at most {@code maxLength + 1}
     * @param promptLength tokens in the prefill pass, at least 1 and below the sequence length
     * @param policy skip policy, or null to run every block
     * @param seed seeds the policy's random generator
     * @return {@code [step][batch]} natural-log NLL of token {@code promptLength + step}
     */
    public float[][] forcedNll(int[][] sequences, int promptLength, SkipPolicy policy, long seed) {
        int length = checkPrompts(sequences);
        if (promptLength < 1 || promptLength >= length) {
            throw new KilnException("promptLength must be in 1.." + (length - 1) + ", got " + promptLength);
        }
        if (length - 1 > config.maxLength()) {
            throw new KilnException("sequence length " + length + " needs " + (length - 1)
                    + " positions; the model's maxLength is " + config.maxLength());
        }
        int steps = length - promptLength;
        float[][] nll = new float[steps][];
        int[][] seq = new int[sequences.length][];
        for (int b = 0; b < seq.length; b++) {
            seq[b] = sequences[b].clone();
        }
        loop(seq, promptLength, steps, Decoding.greedy(seed), policy, true, nll);
        return nll;
    }

    /**
     * The shared pass loop. With {@code forcedNll} null the chosen token is written into {@code seq}; otherwise
     * {@code seq} already holds the targets, which are kept, and each step's NLL of its target is stored there.
     */
    private TimedGeneration loop(int[][] seq, int length, int steps, Decoding decoding, SkipPolicy policy,
            boolean useCache, float[][] forcedNll) {
        int batch = seq.length;
        int layers = config.layers();
        int positions = length + steps - 1;
        byte[][] flags = new byte[positions][];
        float[][][] allLogits = new float[steps][][];
        SplittableRandom sampler = new SplittableRandom(decoding.seed());
        // a separate stream so sampling never shifts the policy's draws between cached and recomputing runs
        SplittableRandom policyRandom = new SplittableRandom(decoding.seed() ^ 0x5DEECE66DL);
        ModelLayout layout = new ModelLayout(layers, 0);
        long prefillNanos = 0;
        long decodeNanos = 0;
        try (NDManager run = manager.newSubManager()) {
            NDArray[] keys = useCache ? new NDArray[layers] : null;
            NDArray[] values = useCache ? new NDArray[layers] : null;
            int[] cached = new int[layers];
            for (int step = 0; step < steps; step++) {
                long started = System.nanoTime();
                try (NDManager sm = run.newSubManager()) {
                    Phase phase = step == 0 ? Phase.PREFILL : Phase.DECODE;
                    int liveStart = step == 0 ? 0 : length + step - 1;
                    int end = length + step;
                    SkipSession session = policy == null ? null
                            : policy.begin(layout, phase, liveStart, policyRandom);
                    if (session == null && policy != null) {
                        throw new KilnException("skip policy " + policy.getClass().getName() + " returned no session");
                    }
                    int from = useCache ? liveStart : 0;
                    Pass pass = new Pass(sm, run, session, policy, flags, from, liveStart, end, keys, values, cached);
                    NDArray logits = pass.forward(seq);
                    if (forcedNll != null) {
                        forcedNll[step] = nll(sm, logits, seq, end);
                    } else {
                        allLogits[step] = toRows(logits, batch);
                        int[] next = choose(sm, logits, decoding, sampler, batch);
                        for (int b = 0; b < batch; b++) {
                            seq[b][end] = next[b];
                        }
                    }
                }
                long took = System.nanoTime() - started;
                if (step == 0) {
                    prefillNanos = took;
                } else {
                    decodeNanos += took;
                }
            }
            if (useCache) {
                for (int l = 0; l < layers; l++) {
                    if (keys[l] != null) {
                        keys[l].close();
                        values[l].close();
                    }
                }
            }
        }
        int[][] tokens = new int[batch][steps];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(seq[b], length, tokens[b], 0, steps);
        }
        boolean[][] layerRan = new boolean[positions][layers];
        boolean[][] attnRan = new boolean[positions][layers];
        boolean[][] ffnRan = new boolean[positions][layers];
        for (int p = 0; p < positions; p++) {
            for (int l = 0; l < layers; l++) {
                layerRan[p][l] = (flags[p][l] & 1) != 0;
                attnRan[p][l] = (flags[p][l] & 2) != 0;
                ffnRan[p][l] = (flags[p][l] & 4) != 0;
            }
        }
        return new TimedGeneration(new Generation(tokens, forcedNll == null ? allLogits : null, layerRan, attnRan,
                ffnRan), prefillNanos, decodeNanos);
    }

    private static float[] nll(NDManager sm, NDArray logits, int[][] seq, int position) {
        long[] targets = new long[seq.length];
        for (int b = 0; b < seq.length; b++) {
            targets[b] = seq[b][position];
        }
        NDArray oneHot = sm.create(targets).oneHot(VOCAB).toType(DataType.FLOAT32, false);
        return logits.logSoftmax(-1).mul(oneHot).sum(new int[] {-1}).neg().toFloatArray();
    }

    /**
     * Recomputes what the forward pass derives from the weights (the transposed matrices). Call it after writing
     * into {@link #weights()} in place (training, loading) so inference never reads stale copies.
     */
    public void refreshDerived() {
        for (NDArray t : transposed.values()) {
            t.close();
        }
        transposed.clear();
        // Factors describe the weights as they were when factor() was called; new weights make them stale.
        for (NDArray[] f : factored.values()) {
            f[0].close();
            f[1].close();
        }
        factored.clear();
        for (Map.Entry<String, NDArray> e : weights.entrySet()) {
            if (e.getValue().getShape().dimension() == 2 && !e.getKey().startsWith("pos.")) {
                transposed.put(e.getKey(), e.getValue().transpose());
            }
        }
    }

    /**
     * Runs the linear layer of {@code weight} ({@code layers.{i}.attn.qkv.weight}, {@code attn.out}, {@code ffn.up}
     * or {@code ffn.down}) as two thin matmuls, {@code y = (x V^T) U^T + b} with {@code u} [out, r] and {@code v}
     * [r, in]: {@code r (in + out)} multiply-adds per token instead of {@code in * out}. For inference: the dense
     * weight in {@link #weights()} is left as it is (callers load it with {@code U V} so both agree), and
     * {@link #refreshDerived} (after training or loading) drops every factorisation.
     *
     * @throws KilnException when {@code weight} is not such a layer or the factors do not multiply to its shape
     */
    public void factor(String weight, NDArray u, NDArray v) {
        NDArray w = weights.get(weight);
        if (w == null || !LINEAR_WEIGHT.matcher(weight).matches()) {
            throw new KilnException("decoder LM: '" + weight + "' is not a linear layer weight that can run"
                    + " factored (layers.{i}.attn.qkv.weight, attn.out, ffn.up or ffn.down)");
        }
        Shape shape = w.getShape();
        Shape us = u.getShape();
        Shape vs = v.getShape();
        if (us.dimension() != 2 || vs.dimension() != 2 || us.get(0) != shape.get(0) || vs.get(1) != shape.get(1)
                || us.get(1) != vs.get(0) || us.get(1) < 1) {
            throw new KilnException("decoder LM: factors " + us + " and " + vs + " of '" + weight + "' do not"
                    + " multiply to its shape " + shape + "; expected [out, r] and [r, in]");
        }
        NDArray vt = v.toType(DataType.FLOAT32, false).transpose().duplicate();
        NDArray ut = u.toType(DataType.FLOAT32, false).transpose().duplicate();
        vt.attach(manager);
        ut.attach(manager);
        NDArray[] previous = factored.put(weight, new NDArray[] {vt, ut});
        if (previous != null) {
            previous[0].close();
            previous[1].close();
        }
    }

    /** Whether {@code weight} names a linear layer weight that {@link #factor} accepts. */
    public static boolean isFactorable(String weight) {
        return LINEAR_WEIGHT.matcher(weight).matches();
    }

    /** The weights currently run factored, with their ranks, in the order they were factored. */
    public Map<String, Integer> factoredRanks() {
        Map<String, Integer> out = new LinkedHashMap<>();
        factored.forEach((name, f) -> out.put(name, (int) f[0].getShape().get(1)));
        return out;
    }

    private int checkPrompts(int[][] prompts) {
        if (prompts == null || prompts.length == 0) {
            throw new KilnException("prompts: at least one prompt is needed");
        }
        int length = -1;
        for (int b = 0; b < prompts.length; b++) {
            if (prompts[b] == null || prompts[b].length == 0) {
                throw new KilnException("prompts: prompt " + b + " is empty");
            }
            if (length >= 0 && prompts[b].length != length) {
                throw new KilnException("prompts: prompt " + b + " has length " + prompts[b].length
                        + " but prompt 0 has " + length + "; all prompts must have the same length");
            }
            length = prompts[b].length;
            for (int t = 0; t < length; t++) {
                if (prompts[b][t] < 0 || prompts[b][t] >= VOCAB) {
                    throw new KilnException("prompts: token " + prompts[b][t] + " at prompt " + b + " position " + t
                            + " is not a byte (0..255)");
                }
            }
        }
        return length;
    }

    private static float[][] toRows(NDArray logits, int batch) {
        float[] flat = logits.toFloatArray();
        float[][] rows = new float[batch][VOCAB];
        for (int b = 0; b < batch; b++) {
            System.arraycopy(flat, b * VOCAB, rows[b], 0, VOCAB);
        }
        return rows;
    }

    private static int[] choose(NDManager sm, NDArray logits, Decoding decoding, SplittableRandom sampler,
            int batch) {
        NDArray scores = logits;
        if (!decoding.greedy()) {
            // Gumbel-max: arg-max of logits / T plus Gumbel noise is a draw from softmax(logits / T)
            float[] u = new float[batch * VOCAB];
            for (int i = 0; i < u.length; i++) {
                u[i] = (float) Math.max(sampler.nextDouble(), 1e-12);
            }
            NDArray gumbel = sm.create(u, new Shape(batch, VOCAB)).log().neg().log().neg();
            scores = logits.div((float) decoding.temperature()).add(gumbel);
        }
        long[] picked = scores.argMax(-1).toType(DataType.INT64, false).toLongArray();
        int[] next = new int[batch];
        for (int b = 0; b < batch; b++) {
            next[b] = (int) picked[b];
        }
        return next;
    }

    /** One forward pass over positions {@code [from, end)}, with live decisions for {@code [liveStart, end)}. */
    private final class Pass {
        private final NDManager sm;
        private final NDManager run;
        private final SkipSession session;
        private final SkipPolicy policy;
        private final byte[][] flags;
        private final int from;
        private final int liveStart;
        private final int end;
        private final NDArray[] keys;
        private final NDArray[] values;
        private final int[] cached;

        Pass(NDManager sm, NDManager run, SkipSession session, SkipPolicy policy, byte[][] flags, int from,
                int liveStart, int end, NDArray[] keys, NDArray[] values, int[] cached) {
            this.sm = sm;
            this.run = run;
            this.session = session;
            this.policy = policy;
            this.flags = flags;
            this.from = from;
            this.liveStart = liveStart;
            this.end = end;
            this.keys = keys;
            this.values = values;
            this.cached = cached;
        }

        NDArray forward(int[][] seq) {
            int batch = seq.length;
            int len = end - from;
            int d = config.dim();
            int[] flat = new int[batch * len];
            for (int b = 0; b < batch; b++) {
                System.arraycopy(seq[b], from, flat, b * len, len);
            }
            // one-hot products keep every result in the step manager (a gather on the weight would attach to it)
            NDArray h = sm.create(flat, new Shape(batch, len)).toType(DataType.INT64, false).oneHot(VOCAB)
                    .toType(DataType.FLOAT32, false)
                    .matMul(weights.get("embed.weight"));
            NDArray pos = sm.arange(from, end).toType(DataType.INT64, false).oneHot(config.maxLength())
                    .toType(DataType.FLOAT32, false)
                    .matMul(weights.get("pos.weight"));
            h = h.add(pos);
            for (int l = 0; l < config.layers(); l++) {
                h = layer(l, h, batch, len, d);
            }
            NDArray last = h.get(new NDIndex(":, -1, :"));
            last = layerNorm(last, "norm");
            String head = config.tiedHead() ? "embed.weight" : "head.weight";
            return last.matMul(transposed.get(head));
        }

        private NDArray layer(int l, NDArray h, int batch, int len, int d) {
            boolean live = false;
            boolean liveAttn = false;
            if (session == null) {
                live = true;
                liveAttn = true;
            } else {
                live = session.runLayer(l);
                liveAttn = live && session.runAttention(l);
            }
            boolean[] attn = mask(l, 2, liveAttn, len);
            checkCache(l, attn);
            if (any(attn)) {
                NDArray a = attention(l, layerNorm(h, "layers." + l + ".ln1"), batch, len, d, liveAttn);
                h = h.add(applyMask(a, attn, len));
            }
            boolean liveFfn = live && (session == null || session.runFfn(l));
            boolean[] ffn = mask(l, 4, liveFfn, len);
            if (any(ffn)) {
                String p = "layers." + l + ".ffn.";
                NDArray u = linear(layerNorm(h, "layers." + l + ".ln2"), p + "up");
                NDArray f = linear(gelu(u), p + "down");
                NDArray before = h;
                h = h.add(applyMask(f, ffn, len));
                if (liveFfn && session != null) {
                    session.observeFfn(l, liveSlice(before), liveSlice(h));
                }
            }
            byte flag = (byte) ((live ? 1 : 0) | (liveAttn ? 2 : 0) | (liveFfn ? 4 : 0));
            for (int p = liveStart; p < end; p++) {
                if (flags[p] == null) {
                    flags[p] = new byte[config.layers()];
                }
                flags[p][l] = flag;
            }
            return h;
        }

        private NDArray liveSlice(NDArray x) {
            return liveStart == from ? x : x.get(new NDIndex(":, {}:, :", liveStart - from));
        }

        /** Per pass position, whether the sub-block with {@code bit} runs: recorded decisions, then the live one. */
        private boolean[] mask(int layer, int bit, boolean liveValue, int len) {
            boolean[] m = new boolean[len];
            for (int i = 0; i < len; i++) {
                int p = from + i;
                m[i] = p >= liveStart ? liveValue : (flags[p][layer] & bit) != 0;
            }
            return m;
        }

        private void checkCache(int layer, boolean[] attn) {
            String rule = policy == null ? "" : " (" + policy.kvCacheRule() + ")";
            if (keys != null) {
                if (attn[attn.length - 1] && cached[layer] != from) {
                    throw new KilnException("skip policy broke its KV cache rule" + rule + ": layer " + layer
                            + " runs attention at position " + from + " but only " + cached[layer]
                            + " earlier positions have cache entries there");
                }
                return;
            }
            for (int q = 0; q < attn.length; q++) {
                if (attn[q]) {
                    for (int p = 0; p < q; p++) {
                        if (!attn[p]) {
                            throw new KilnException("skip policy broke its KV cache rule" + rule + ": layer "
                                    + layer + " runs attention at position " + (from + q) + " but position "
                                    + (from + p) + " skipped it there");
                        }
                    }
                }
            }
        }

        private NDArray attention(int l, NDArray x, int batch, int len, int d, boolean append) {
            int heads = config.heads();
            int dh = d / heads;
            NDList qkv = linear(x, "layers." + l + ".attn.qkv").split(3, 2);
            NDArray q = qkv.get(0).reshape(batch, len, heads, dh).transpose(0, 2, 1, 3);
            NDArray k = qkv.get(1).reshape(batch, len, heads, dh).transpose(0, 2, 1, 3);
            NDArray v = qkv.get(2).reshape(batch, len, heads, dh).transpose(0, 2, 1, 3);
            int keyStart = from;
            if (keys != null) {
                if (keys[l] != null && cached[l] > 0) {
                    k = keys[l].concat(k, 2);
                    v = values[l].concat(v, 2);
                    keyStart = 0;
                } else {
                    keyStart = from - cached[l];
                }
                if (append) {
                    // the cache outlives this step's manager
                    k.attach(run);
                    v.attach(run);
                    if (keys[l] != null) {
                        keys[l].close();
                        values[l].close();
                    }
                    keys[l] = k;
                    values[l] = v;
                    cached[l] = end;
                }
            }
            NDArray scores = q.matMul(k.transpose(0, 1, 3, 2)).div((float) Math.sqrt(dh));
            int keyCount = (int) k.getShape().get(2);
            NDArray queryPos = sm.arange(from, end).reshape(len, 1);
            NDArray keyPos = sm.arange(keyStart, keyStart + keyCount).reshape(1, keyCount);
            NDArray future = keyPos.gt(queryPos).toType(DataType.FLOAT32, false).mul(-1e9f);
            NDArray weightsA = scores.add(future).softmax(-1);
            NDArray out = weightsA.matMul(v).transpose(0, 2, 1, 3).reshape(batch, len, d);
            return linear(out, "layers." + l + ".attn.out");
        }

        private NDArray applyMask(NDArray delta, boolean[] m, int len) {
            if (allTrue(m)) {
                return delta;
            }
            float[] f = new float[len];
            for (int i = 0; i < len; i++) {
                f[i] = m[i] ? 1f : 0f;
            }
            return delta.mul(sm.create(f, new Shape(1, len, 1)));
        }
    }

    private NDArray linear(NDArray x, String name) {
        NDArray[] f = factored.get(name + ".weight");
        if (f != null) {
            return x.matMul(f[0]).matMul(f[1]).add(weights.get(name + ".bias"));
        }
        return x.matMul(transposed.get(name + ".weight")).add(weights.get(name + ".bias"));
    }

    private NDArray layerNorm(NDArray x, String name) {
        NDArray centred = x.sub(x.mean(new int[] {-1}, true));
        NDArray var = centred.square().mean(new int[] {-1}, true);
        return centred.div(var.add(LN_EPS).sqrt()).mul(weights.get(name + ".weight")).add(weights.get(name + ".bias"));
    }

    /** The tanh approximation of GELU (GPT-2's), so the float64 test reference needs no erf. */
    static NDArray gelu(NDArray x) {
        NDArray inner = x.add(x.pow(3).mul(0.044715f)).mul((float) Math.sqrt(2 / Math.PI));
        return x.mul(inner.tanh().add(1f)).mul(0.5f);
    }

    private static boolean any(boolean[] m) {
        for (boolean b : m) {
            if (b) {
                return true;
            }
        }
        return false;
    }

    private static boolean allTrue(boolean[] m) {
        for (boolean b : m) {
            if (!b) {
                return false;
            }
        }
        return true;
    }

    @Override
    public void close() {
        manager.close();
    }
}
