package dev.kiln.core.lm.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.engine.GraphScalars;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.SkipSession;
import java.util.Map;

/**
 * The teacher-forced forward of a {@link DecoderLm} over whole sequences, written so autograd can follow it: the
 * same maths as the model's inference pass (pre-LayerNorm blocks, causal attention, tanh-GELU FFN, final norm, tied
 * or separate head) but on the live weight arrays, with no KV cache and logits for every position.
 *
 * <p>Every temporary is attached to the caller's step manager: an op's result joins its first operand's manager,
 * so a transpose of a weight would otherwise pile up in the model's manager for the whole run.
 */
final class TrainingForward {
    private static final float LN_EPS = 1e-5f;

    private TrainingForward() {
    }

    /**
     * Logits {@code (B, T, 256)} for {@code tokens} {@code (B, T)} (int64, in {@code sm}). A null session runs every
     * block; otherwise a skipped layer, attention or FFN is the identity. {@code layersRun[0]}, when given, gains
     * the number of blocks that ran; {@code used}, when given, gains the names of the weights the pass read.
     */
    static NDArray logits(NDManager sm, DecoderLm model, NDArray tokens, SkipSession session, long[] layersRun,
            java.util.Set<String> used) {
        return forward(sm, model, tokens, session, layersRun, used, null, null);
    }

    /**
     * The training loss: mean cross-entropy of the final logits, or, when the session asks for early exits
     * ({@link SkipSession#exitLossWeight}), {@code sum_l w_l * CE(head(norm(h_l)))} over the layers with a weight,
     * where the last layer's term is the final output (LayerSkip's early-exit loss). A dropped layer's exit reads the
     * hidden state it passed through unchanged.
     */
    static NDArray trainingLoss(NDManager sm, DecoderLm model, NDArray tokens, NDArray targets, SkipSession session,
            long[] layersRun, java.util.Set<String> used) {
        int layers = model.config().layers();
        double[] weights = new double[layers];
        boolean early = false;
        for (int l = 0; session != null && l < layers; l++) {
            weights[l] = session.exitLossWeight(l);
            if (!(weights[l] >= 0) || Double.isInfinite(weights[l])) {
                throw new KilnException("lm training: the skip policy gave layer " + l + " an early-exit weight of "
                        + weights[l] + "; weights must be finite and non-negative");
            }
            early |= l < layers - 1 && weights[l] > 0;
        }
        if (!early) {
            return loss(logits(sm, model, tokens, session, layersRun, used), targets);
        }
        java.util.List<NDArray> exits = new java.util.ArrayList<>();
        NDArray last = forward(sm, model, tokens, session, layersRun, used, weights, exits);
        NDArray total = loss(last, targets).mul(GraphScalars.of(sm, (float) weights[layers - 1]));
        int next = 0;
        for (int l = 0; l < layers - 1; l++) {
            if (weights[l] > 0) {
                NDArray exitLogits = head(sm, model, exits.get(next++));
                total = total.add(loss(exitLogits, targets).mul(GraphScalars.of(sm, (float) weights[l])));
            }
        }
        return total;
    }

    /** {@code exitWeights}/{@code exits}: when given, the hidden state after each layer l < L-1 with a weight. */
    private static NDArray forward(NDManager sm, DecoderLm model, NDArray tokens, SkipSession session,
            long[] layersRun, java.util.Set<String> used, double[] exitWeights, java.util.List<NDArray> exits) {
        DecoderConfig c = model.config();
        Map<String, NDArray> w = model.weights();
        int t = (int) tokens.getShape().get(1);
        int b = (int) tokens.getShape().get(0);
        int d = c.dim();
        NDArray h = tokens.oneHot(DecoderLm.VOCAB).toType(DataType.FLOAT32, false).matMul(w.get("embed.weight"));
        NDArray pos = sm.arange(0, t).toType(DataType.INT64, false).oneHot(c.maxLength())
                .toType(DataType.FLOAT32, false).matMul(w.get("pos.weight"));
        h = h.add(pos);
        NDArray future = sm.arange(0, t).reshape(1, t).gt(sm.arange(0, t).reshape(t, 1))
                .toType(DataType.FLOAT32, false).mul(-1e9f);
        int ran = 0;
        for (int l = 0; l < c.layers(); l++) {
            if (exits != null && l > 0 && exitWeights[l - 1] > 0) {
                exits.add(h);
            }
            if (session != null && !session.runLayer(l)) {
                continue;
            }
            ran++;
            String p = "layers." + l + ".";
            if (used != null) {
                for (String name : w.keySet()) {
                    if (name.startsWith(p)) {
                        boolean attn = name.startsWith(p + "ln1") || name.startsWith(p + "attn");
                        if (attn ? session == null || session.runAttention(l) : session == null || session.runFfn(l)) {
                            used.add(name);
                        }
                    }
                }
            }
            if (session == null || session.runAttention(l)) {
                NDArray x = layerNorm(h, w, p + "ln1");
                h = h.add(attention(sm, x, w, p + "attn.", b, t, d, c.heads(), future));
            }
            if (session == null || session.runFfn(l)) {
                NDArray x = layerNorm(h, w, p + "ln2");
                NDArray u = linear(sm, x, w, p + "ffn.up");
                h = h.add(linear(sm, gelu(sm, u), w, p + "ffn.down"));
            }
        }
        if (layersRun != null) {
            layersRun[0] += ran;
        }
        if (used != null) {
            for (String name : w.keySet()) {
                if (!name.startsWith("layers.")) {
                    used.add(name);
                }
            }
        }
        return head(sm, model, h);
    }

    /** The final norm and the (tied or separate) head: logits {@code (B, T, 256)} from hidden states. */
    private static NDArray head(NDManager sm, DecoderLm model, NDArray h) {
        Map<String, NDArray> w = model.weights();
        NDArray out = layerNorm(h, w, "norm");
        NDArray head = model.config().tiedHead() ? w.get("embed.weight") : w.get("head.weight");
        return out.matMul(scoped(head.transpose(), sm));
    }

    /** Mean cross-entropy (nats per token) of {@code logits (B, T, 256)} against int64 {@code targets (B, T)}. */
    static NDArray loss(NDArray logits, NDArray targets) {
        NDArray oneHot = targets.oneHot(DecoderLm.VOCAB).toType(DataType.FLOAT32, false);
        return logits.logSoftmax(-1).mul(oneHot).sum(new int[] {-1}).mean().neg();
    }

    /** Per-token NLL {@code (B, T)}. */
    static NDArray nll(NDArray logits, NDArray targets) {
        NDArray oneHot = targets.oneHot(DecoderLm.VOCAB).toType(DataType.FLOAT32, false);
        return logits.logSoftmax(-1).mul(oneHot).sum(new int[] {-1}).neg();
    }

    private static NDArray attention(NDManager sm, NDArray x, Map<String, NDArray> w, String p, int b, int t, int d,
            int heads, NDArray future) {
        int dh = d / heads;
        NDList qkv = linear(sm, x, w, p + "qkv").split(3, 2);
        NDArray q = qkv.get(0).reshape(b, t, heads, dh).transpose(0, 2, 1, 3);
        NDArray k = qkv.get(1).reshape(b, t, heads, dh).transpose(0, 2, 1, 3);
        NDArray v = qkv.get(2).reshape(b, t, heads, dh).transpose(0, 2, 1, 3);
        NDArray scores = q.matMul(k.transpose(0, 1, 3, 2)).div(GraphScalars.of(sm, (float) Math.sqrt(dh)))
                .add(future);
        NDArray out = scores.softmax(-1).matMul(v).transpose(0, 2, 1, 3).reshape(b, t, d);
        return linear(sm, out, w, p + "out");
    }

    private static NDArray linear(NDManager sm, NDArray x, Map<String, NDArray> w, String name) {
        return x.matMul(scoped(w.get(name + ".weight").transpose(), sm)).add(w.get(name + ".bias"));
    }

    private static NDArray layerNorm(NDArray x, Map<String, NDArray> w, String name) {
        NDArray centred = x.sub(x.mean(new int[] {-1}, true));
        NDArray var = centred.square().mean(new int[] {-1}, true);
        return centred.div(var.add(LN_EPS).sqrt()).mul(w.get(name + ".weight")).add(w.get(name + ".bias"));
    }

    /** tanh-GELU; its constants are step-scoped tensors because autograd keeps them (see GraphScalars). */
    private static NDArray gelu(NDManager sm, NDArray x) {
        NDArray cube = x.pow(GraphScalars.of(sm, 3f));
        NDArray inner = x.add(cube.mul(GraphScalars.of(sm, 0.044715f)))
                .mul(GraphScalars.of(sm, (float) Math.sqrt(2 / Math.PI)));
        return x.mul(inner.tanh().add(1f)).mul(GraphScalars.of(sm, 0.5f));
    }

    static NDArray scoped(NDArray array, NDManager sm) {
        array.attach(sm);
        return array;
    }

    /** Int64 {@code (rows, length)} tokens from byte windows. */
    static NDArray tokens(NDManager sm, byte[] text, int[] starts, int length) {
        long[] flat = new long[starts.length * length];
        for (int r = 0; r < starts.length; r++) {
            for (int i = 0; i < length; i++) {
                flat[r * length + i] = text[starts[r] + i] & 0xFF;
            }
        }
        return sm.create(flat, new Shape(starts.length, length));
    }
}
