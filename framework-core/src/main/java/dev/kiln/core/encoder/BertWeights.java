package dev.kiln.core.encoder;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.TensorSpec;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * BERT weights under Hugging Face names ({@code embeddings.word_embeddings.weight},
 * {@code encoder.layer.3.attention.self.query.weight}, ...), linear weights laid out {@code [out, in]} as in a
 * PyTorch {@code nn.Linear}.
 *
 * <p>PyTorch's ONNX export keeps bias and LayerNorm names but renames every linear weight to an anonymous
 * {@code onnx::MatMul_N} stored {@code [in, out]}. Each such MatMul feeds exactly one Add with a named bias, so the
 * weight's name is recovered from the graph rather than from the export's (unstable) numbering.
 */
public final class BertWeights {
    private final Map<String, OnnxTensor> tensors;

    private BertWeights(Map<String, OnnxTensor> tensors) {
        this.tensors = Collections.unmodifiableMap(tensors);
    }

    /** Imports from an ONNX file. */
    public static BertWeights fromOnnx(Path onnxFile) {
        return fromOnnx(OnnxModelReader.read(onnxFile));
    }

    /** Imports from a parsed ONNX graph, naming each MatMul weight after the bias its output is added to. */
    public static BertWeights fromOnnx(OnnxGraph graph) {
        Map<String, OnnxTensor> init = graph.initializers();
        Map<String, List<OnnxGraph.Node>> consumers = new HashMap<>();
        for (OnnxGraph.Node n : graph.nodes()) {
            for (String in : n.inputs()) {
                consumers.computeIfAbsent(in, k -> new ArrayList<>()).add(n);
            }
        }
        Map<String, OnnxTensor> out = new LinkedHashMap<>();
        for (OnnxTensor t : init.values()) {
            if (!isAnonymous(t.name())) {
                out.put(t.name(), t);
            }
        }
        for (OnnxGraph.Node n : graph.nodes()) {
            if (!n.opType().equals("MatMul") || n.inputs().size() != 2) {
                continue;
            }
            OnnxTensor w = init.get(n.inputs().get(1));
            if (w == null || !isAnonymous(w.name())) {
                continue;
            }
            if (w.dims().length != 2) {
                throw new KilnException("ONNX MatMul weight '" + w.name() + "' has rank " + w.dims().length
                        + ", expected 2");
            }
            String bias = biasOf(n, consumers, init);
            if (bias == null) {
                throw new KilnException("ONNX MatMul weight '" + w.name() + "' (node '" + n.name()
                        + "') is not followed by an Add with a named '.bias' initializer; cannot name it");
            }
            String name = bias.substring(0, bias.length() - ".bias".length()) + ".weight";
            if (out.containsKey(name)) {
                throw new KilnException("two ONNX MatMul weights map to '" + name + "' (the second is '"
                        + w.name() + "')");
            }
            out.put(name, transpose(name, w));
        }
        BertWeights weights = new BertWeights(out);
        weights.require("embeddings.word_embeddings.weight");
        weights.require("embeddings.position_embeddings.weight");
        weights.require("embeddings.token_type_embeddings.weight");
        return weights;
    }

    private static boolean isAnonymous(String name) {
        return name.startsWith("onnx::");
    }

    private static String biasOf(OnnxGraph.Node matmul, Map<String, List<OnnxGraph.Node>> consumers,
            Map<String, OnnxTensor> init) {
        for (OnnxGraph.Node next : consumers.getOrDefault(matmul.outputs().get(0), List.of())) {
            if (!next.opType().equals("Add")) {
                continue;
            }
            for (String in : next.inputs()) {
                if (in.endsWith(".bias") && init.containsKey(in)) {
                    return in;
                }
            }
        }
        return null;
    }

    /** [in, out] as MatMul stores it, to [out, in] as nn.Linear and safetensors checkpoints expect. */
    private static OnnxTensor transpose(String name, OnnxTensor w) {
        int rows = (int) w.dims()[0];
        int cols = (int) w.dims()[1];
        float[] src = w.data();
        float[] dst = new float[src.length];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                dst[c * rows + r] = src[r * cols + c];
            }
        }
        return new OnnxTensor(name, new long[] {cols, rows}, dst);
    }

    /** All tensors by Hugging Face name. */
    public Map<String, OnnxTensor> tensors() {
        return tensors;
    }

    /** The named tensor, or a KilnException naming it. */
    public OnnxTensor require(String name) {
        OnnxTensor t = tensors.get(name);
        if (t == null) {
            throw new KilnException("BERT weight '" + name + "' is missing (have " + tensors.size() + " tensors)");
        }
        return t;
    }

    /** Number of encoder layers present ({@code encoder.layer.N.attention.self.query.weight}). */
    public int numLayers() {
        int n = 0;
        while (tensors.containsKey("encoder.layer." + n + ".attention.self.query.weight")) {
            n++;
        }
        return n;
    }

    /** Hidden size, from the word embedding width. */
    public int hiddenSize() {
        return (int) require("embeddings.word_embeddings.weight").dims()[1];
    }

    /** Total number of values over all tensors. */
    public long parameterCount() {
        long n = 0;
        for (OnnxTensor t : tensors.values()) {
            n += t.size();
        }
        return n;
    }

    /** The named tensor as an NDArray on {@code manager}. */
    public NDArray toNDArray(NDManager manager, String name) {
        OnnxTensor t = require(name);
        return manager.create(t.data(), new Shape(t.dims()));
    }

    /** Saves every tensor as F32 in a safetensors file, sorted by name. */
    public void saveSafetensors(Path target, Map<String, String> metadata) {
        List<String> names = new ArrayList<>(tensors.keySet());
        Collections.sort(names);
        List<TensorSpec> specs = new ArrayList<>();
        for (String n : names) {
            specs.add(new TensorSpec(n, DType.F32, tensors.get(n).dims()));
        }
        try (SafetensorsWriter w = SafetensorsWriter.create(target, metadata, specs)) {
            for (String n : names) {
                w.writeFloats(n, tensors.get(n).data());
            }
            w.commit();
        }
    }
}
