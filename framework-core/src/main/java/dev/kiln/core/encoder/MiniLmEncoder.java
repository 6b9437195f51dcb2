package dev.kiln.core.encoder;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Embedding;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.LayerNorm;
import ai.djl.ndarray.types.SparseFormat;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A BERT encoder (all-MiniLM-L6-v2 and other post-LayerNorm BERTs) written in DJL NDArray operations.
 *
 * <p>Embeddings (word + position + token type, LayerNorm), then per layer: multi-head self-attention with the padding
 * mask added as a large negative bias before the softmax, output projection, residual and LayerNorm, then a GELU (erf
 * form) feed-forward block, residual and LayerNorm. {@link #forward(NDArray, NDArray, NDArray, boolean[])} can skip
 * layers (a skipped layer is the identity) so layer-skip policies can be measured on a real pretrained model.
 *
 * <p>Weights live in a sub-manager of the one given at construction and are freed by {@link #close()}.
 */
public final class MiniLmEncoder implements AutoCloseable {
    /** BERT's LayerNorm epsilon. */
    public static final float LAYER_NORM_EPS = 1e-12f;
    /** Added to attention scores of padding keys; exp() of it is exactly 0 in float32. */
    private static final float MASKED = -1e9f;

    private final NDManager manager;
    private final Map<String, NDArray> w = new HashMap<>();
    private final WordPieceTokenizer tokenizer;
    private final int layers;
    private final int hidden;
    private final int heads;
    private final int headDim;
    private final long vocab;
    private final long maxPositions;
    private final long typeVocab;

    /**
     * Builds the encoder from imported weights.
     *
     * @param weights the Hugging Face-named weights
     * @param tokenizer the tokenizer for {@link #embed(List)}; may be null when only {@code forward} is used
     * @param numHeads attention heads (12 for MiniLM-L6; not recoverable from the weights)
     * @param parent manager the weights are placed under (its device is used)
     */
    public MiniLmEncoder(BertWeights weights, WordPieceTokenizer tokenizer, int numHeads, NDManager parent) {
        this.tokenizer = tokenizer;
        this.layers = weights.numLayers();
        this.hidden = weights.hiddenSize();
        if (layers == 0) {
            throw new KilnException("BERT weights have no encoder layers (no encoder.layer.0.attention.self.query.weight)");
        }
        if (numHeads <= 0 || hidden % numHeads != 0) {
            throw new KilnException("numHeads " + numHeads + " must be positive and divide the hidden size " + hidden);
        }
        this.heads = numHeads;
        this.headDim = hidden / numHeads;
        this.vocab = weights.require("embeddings.word_embeddings.weight").dims()[0];
        this.maxPositions = weights.require("embeddings.position_embeddings.weight").dims()[0];
        this.typeVocab = weights.require("embeddings.token_type_embeddings.weight").dims()[0];
        if (tokenizer != null && tokenizer.vocabSize() > vocab) {
            throw new KilnException("tokenizer vocabulary " + tokenizer.vocabSize() + " is larger than the model's "
                    + vocab);
        }
        this.manager = parent.newSubManager();
        for (String name : weights.tensors().keySet()) {
            w.put(name, weights.toNDArray(manager, name));
        }
        for (int i = 0; i < layers; i++) {
            for (String part : new String[] {"attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
                "output.LayerNorm"}) {
                weight("encoder.layer." + i + "." + part + ".weight");
                weight("encoder.layer." + i + "." + part + ".bias");
            }
        }
        weight("embeddings.LayerNorm.weight");
        weight("embeddings.LayerNorm.bias");
    }

    /** Loads all-MiniLM-L6-v2 style files: the .onnx export and its tokenizer.json; 12 heads. */
    public static MiniLmEncoder load(Path onnx, Path tokenizerJson, NDManager parent) {
        return new MiniLmEncoder(BertWeights.fromOnnx(onnx), WordPieceTokenizer.fromJson(tokenizerJson), 12, parent);
    }

    /**
     * Loads from streams (e.g. class path resources), read fully and not closed here; 12 heads, the tokenizer's own
     * maximum length.
     */
    public static MiniLmEncoder load(java.io.InputStream onnx, java.io.InputStream tokenizerJson, NDManager parent) {
        return new MiniLmEncoder(BertWeights.fromOnnx(OnnxModelReader.read(onnx, "onnx stream")),
                WordPieceTokenizer.fromJson(tokenizerJson, "tokenizer stream", 0), 12, parent);
    }

    private NDArray weight(String name) {
        NDArray a = w.get(name);
        if (a == null) {
            throw new KilnException("BERT weight '" + name + "' is missing");
        }
        return a;
    }

    /** Number of encoder layers. */
    public int numLayers() {
        return layers;
    }

    /** Hidden size. */
    public int hiddenSize() {
        return hidden;
    }

    /** The tokenizer given at construction (may be null). */
    public WordPieceTokenizer tokenizer() {
        return tokenizer;
    }

    /** Runs every layer; see {@link #forward(NDArray, NDArray, NDArray, boolean[])}. */
    public NDArray forward(NDArray ids, NDArray mask, NDArray types) {
        return forward(ids, mask, types, null);
    }

    /**
     * Computes {@code last_hidden_state} [B, T, hidden] for int64 (or int32) inputs of shape [B, T].
     *
     * @param types token type ids, or null for all zeros
     * @param runLayer per layer whether to run it (a skipped layer passes its input through); null runs all
     * @return the hidden states, attached to {@code ids}'s manager
     */
    public NDArray forward(NDArray ids, NDArray mask, NDArray types, boolean[] runLayer) {
        Shape shape = ids.getShape();
        if (shape.dimension() != 2) {
            throw new KilnException("input_ids must be [batch, length] but has shape " + shape);
        }
        if (!mask.getShape().equals(shape)) {
            throw new KilnException("attention_mask shape " + mask.getShape() + " differs from input_ids " + shape);
        }
        if (types != null && !types.getShape().equals(shape)) {
            throw new KilnException("token_type_ids shape " + types.getShape() + " differs from input_ids " + shape);
        }
        if (runLayer != null && runLayer.length != layers) {
            throw new KilnException("runLayer has " + runLayer.length + " entries but the encoder has " + layers
                    + " layers");
        }
        long b = shape.get(0);
        long t = shape.get(1);
        if (t < 1 || b < 1) {
            throw new KilnException("input_ids shape " + shape + " is empty");
        }
        if (t > maxPositions) {
            throw new KilnException("sequence length " + t + " exceeds the model's " + maxPositions + " positions");
        }
        NDManager caller = ids.getManager();
        try (NDManager scope = caller.newSubManager(ids.getDevice())) {
            NDArray id = ids.toType(DataType.INT64, true);
            id.attach(scope);
            checkRange("input_ids", id, vocab);
            NDArray ty;
            if (types == null) {
                ty = scope.zeros(shape, DataType.INT64);
            } else {
                ty = types.toType(DataType.INT64, true);
                ty.attach(scope);
                checkRange("token_type_ids", ty, typeVocab);
            }
            NDArray m = mask.toType(DataType.FLOAT32, true);
            m.attach(scope);

            NDArray words = Embedding.embedding(id, weight("embeddings.word_embeddings.weight"), SparseFormat.DENSE)
                    .singletonOrThrow();
            words.attach(scope);
            NDArray typeEmb = Embedding.embedding(ty, weight("embeddings.token_type_embeddings.weight"),
                    SparseFormat.DENSE).singletonOrThrow();
            typeEmb.attach(scope);
            NDArray pos = weight("embeddings.position_embeddings.weight").get(scope,
                    new ai.djl.ndarray.index.NDIndex("0:{}", t));
            NDArray x = layerNorm(words.add(typeEmb).add(pos), "embeddings.LayerNorm");

            // [B, 1, 1, T]: the same key mask for every head and query position.
            NDArray maskBias = m.neg().add(1f).mul(MASKED).reshape(b, 1, 1, t);
            for (int i = 0; i < layers; i++) {
                if (runLayer == null || runLayer[i]) {
                    x = layer(x, maskBias, "encoder.layer." + i + ".", b, t);
                }
            }
            x.attach(caller);
            return x;
        }
    }

    private void checkRange(String what, NDArray a, long bound) {
        long min = a.min().getLong();
        long max = a.max().getLong();
        if (min < 0 || max >= bound) {
            throw new KilnException(what + " contains " + (min < 0 ? min : max) + ", outside [0, " + bound + ")");
        }
    }

    private NDArray layer(NDArray x, NDArray maskBias, String p, long b, long t) {
        NDArray q = heads(linear(x, p + "attention.self.query"), b, t);
        NDArray k = heads(linear(x, p + "attention.self.key"), b, t);
        NDArray v = heads(linear(x, p + "attention.self.value"), b, t);
        NDArray scores = q.matMul(k.transpose(0, 1, 3, 2)).div((float) Math.sqrt(headDim)).add(maskBias);
        NDArray ctx = scores.softmax(-1).matMul(v).transpose(0, 2, 1, 3).reshape(b, t, hidden);
        NDArray attn = layerNorm(linear(ctx, p + "attention.output.dense").add(x), p + "attention.output.LayerNorm");
        NDArray inner = gelu(linear(attn, p + "intermediate.dense"));
        return layerNorm(linear(inner, p + "output.dense").add(attn), p + "output.LayerNorm");
    }

    /** [B, T, hidden] to [B, heads, T, headDim]. */
    private NDArray heads(NDArray x, long b, long t) {
        return x.reshape(b, t, heads, headDim).transpose(0, 2, 1, 3);
    }

    private NDArray linear(NDArray x, String prefix) {
        return Linear.linear(x, weight(prefix + ".weight"), weight(prefix + ".bias")).singletonOrThrow();
    }

    private NDArray layerNorm(NDArray x, String prefix) {
        return LayerNorm.layerNorm(x, new Shape(hidden), weight(prefix + ".weight"), weight(prefix + ".bias"),
                LAYER_NORM_EPS).singletonOrThrow();
    }

    /** The exact (erf) GELU BERT was trained with, not the tanh approximation. */
    private static NDArray gelu(NDArray x) {
        return x.mul(0.5f).mul(x.div((float) Math.sqrt(2.0)).erf().add(1f));
    }

    /**
     * Attention-masked mean of {@code hidden} [B, T, H] over tokens, then L2-normalised: sentence-transformers'
     * pooling for all-MiniLM-L6-v2. Returns [B, H] attached to {@code hidden}'s manager.
     */
    public static NDArray meanPoolNormalize(NDArray hidden, NDArray mask) {
        NDManager caller = hidden.getManager();
        try (NDManager scope = caller.newSubManager()) {
            NDArray h = hidden.duplicate();
            h.attach(scope);
            NDArray m = mask.toType(DataType.FLOAT32, true);
            m.attach(scope);
            NDArray sum = h.mul(m.expandDims(-1)).sum(new int[] {1});
            NDArray count = m.sum(new int[] {1}, true).maximum(1e-9f);
            NDArray mean = sum.div(count);
            NDArray norm = mean.norm(new int[] {1}, true).maximum(1e-12f);
            NDArray out = mean.div(norm);
            out.attach(caller);
            return out;
        }
    }

    /** Sentence embeddings (masked mean, L2-normalised) of each text, as [texts][hidden]. */
    public float[][] embed(List<String> texts) {
        if (tokenizer == null) {
            throw new KilnException("this encoder was built without a tokenizer; use forward() with token ids");
        }
        TokenizedBatch batch = tokenizer.encodeBatch(texts);
        try (NDManager scope = manager.newSubManager()) {
            NDArray mask = batch.mask(scope);
            NDArray hiddenStates = forward(batch.ids(scope), mask, batch.types(scope));
            float[] flat = meanPoolNormalize(hiddenStates, mask).toFloatArray();
            float[][] out = new float[texts.size()][hidden];
            for (int i = 0; i < out.length; i++) {
                System.arraycopy(flat, i * hidden, out[i], 0, hidden);
            }
            return out;
        }
    }

    @Override
    public void close() {
        manager.close();
    }
}
