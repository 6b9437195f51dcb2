package dev.kiln.core.encoder;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import dev.kiln.spi.KilnException;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The ONNX reader and MatMul naming on small models written here field by field from onnx.proto, covering the
 * encodings the real export does not use (packed float_data, unpacked dims, int64 initializers, extra fields).
 */
class OnnxImportTest {

    private interface Body {
        void write(CodedOutputStream out) throws IOException;
    }

    private static byte[] message(Body body) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        CodedOutputStream out = CodedOutputStream.newInstance(bytes);
        body.write(out);
        out.flush();
        return bytes.toByteArray();
    }

    private static byte[] node(String op, List<String> in, List<String> outs) throws IOException {
        return message(o -> {
            for (String s : in) {
                o.writeString(1, s);
            }
            for (String s : outs) {
                o.writeString(2, s);
            }
            o.writeString(3, op + "_node");
            o.writeString(4, op);
            o.writeString(7, "ai.onnx"); // domain: must be skipped
        });
    }

    /** A float tensor with packed float_data (field 4) and unpacked dims. */
    private static byte[] packedTensor(String name, long[] dims, float[] values) throws IOException {
        byte[] packed = message(o -> {
            for (float v : values) {
                o.writeFloatNoTag(v);
            }
        });
        return message(o -> {
            for (long d : dims) {
                o.writeInt64(1, d);
            }
            o.writeInt32(2, 1);
            o.writeByteArray(4, packed);
            o.writeString(8, name);
        });
    }

    /** A float tensor with raw little-endian bytes (field 9) and packed dims. */
    private static byte[] rawTensor(String name, long[] dims, float[] values) throws IOException {
        ByteBuffer raw = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            raw.putFloat(v);
        }
        byte[] dimsPacked = message(o -> {
            for (long d : dims) {
                o.writeInt64NoTag(d);
            }
        });
        return message(o -> {
            o.writeString(8, name);
            o.writeByteArray(1, dimsPacked);
            o.writeInt32(2, 1);
            o.writeBytes(9, ByteString.copyFrom(raw.array()));
        });
    }

    private static byte[] int64Tensor(String name) throws IOException {
        return message(o -> {
            o.writeInt64(1, 2);
            o.writeInt32(2, 7);
            o.writeInt64(7, 0);
            o.writeInt64(7, 1);
            o.writeString(8, name);
        });
    }

    private static byte[] model(List<byte[]> nodes, List<byte[]> inits) throws IOException {
        byte[] graph = message(o -> {
            for (byte[] n : nodes) {
                o.writeByteArray(1, n);
            }
            o.writeString(2, "g");
            for (byte[] t : inits) {
                o.writeByteArray(5, t);
            }
            o.writeByteArray(11, message(v -> v.writeString(1, "x")));
            o.writeByteArray(12, message(v -> v.writeString(1, "z")));
        });
        return message(o -> {
            o.writeInt64(1, 7); // ir_version
            o.writeString(2, "test"); // producer_name
            o.writeByteArray(7, graph);
            o.writeByteArray(8, message(v -> v.writeInt64(2, 11))); // opset_import
        });
    }

    @Test
    void readsTensorsInEveryEncodingAndNamesMatMulWeightsByTheirBias() throws Exception {
        Random rnd = new Random(7);
        int in = 3;
        int out = 4;
        float[] w = new float[in * out];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) rnd.nextGaussian();
        }
        float[] bias = {0.5f, -1f, 2f, 0.25f};
        float[] emb = {1, 2, 3, 4, 5, 6};
        byte[] onnx = model(
                List.of(node("MatMul", List.of("x", "onnx::MatMul_9"), List.of("y")),
                        node("Add", List.of("blk.dense.bias", "y"), List.of("z"))),
                List.of(packedTensor("onnx::MatMul_9", new long[] {in, out}, w),
                        rawTensor("blk.dense.bias", new long[] {out}, bias),
                        rawTensor("embeddings.word_embeddings.weight", new long[] {2, 3}, emb),
                        packedTensor("embeddings.position_embeddings.weight", new long[] {1, 3}, new float[3]),
                        packedTensor("embeddings.token_type_embeddings.weight", new long[] {1, 3}, new float[3]),
                        int64Tensor("embeddings.position_ids")));
        OnnxGraph graph = OnnxModelReader.read(new ByteArrayInputStream(onnx), "tiny.onnx");
        assertEquals(List.of("x"), graph.inputs());
        assertEquals(List.of("z"), graph.outputs());
        assertEquals(2, graph.nodes().size());
        assertEquals("MatMul", graph.nodes().get(0).opType());
        assertEquals(List.of("x", "onnx::MatMul_9"), graph.nodes().get(0).inputs());
        assertEquals(5, graph.initializers().size(), "the int64 initializer is skipped");
        assertArrayEquals(w, graph.initializers().get("onnx::MatMul_9").data());
        assertArrayEquals(emb, graph.initializers().get("embeddings.word_embeddings.weight").data());
        assertArrayEquals(new long[] {2, 3}, graph.initializers().get("embeddings.word_embeddings.weight").dims());

        BertWeights weights = BertWeights.fromOnnx(graph);
        OnnxTensor named = weights.require("blk.dense.weight");
        assertArrayEquals(new long[] {out, in}, named.dims());
        for (int r = 0; r < in; r++) {
            for (int c = 0; c < out; c++) {
                assertEquals(w[r * out + c], named.data()[c * in + r], "[in,out] -> [out,in] at " + r + "," + c);
            }
        }
        assertTrue(weights.tensors().keySet().stream().noneMatch(n -> n.startsWith("onnx::")));
        assertArrayEquals(bias, weights.require("blk.dense.bias").data());
    }

    @Test
    void refusesMatMulWeightsItCannotName() throws Exception {
        byte[] onnx = model(List.of(node("MatMul", List.of("x", "onnx::MatMul_3"), List.of("y")),
                node("Relu", List.of("y"), List.of("z"))),
                List.of(packedTensor("onnx::MatMul_3", new long[] {1, 1}, new float[] {1})));
        OnnxGraph graph = OnnxModelReader.read(new ByteArrayInputStream(onnx), "nobias.onnx");
        KilnException e = assertThrows(KilnException.class, () -> BertWeights.fromOnnx(graph));
        assertTrue(e.getMessage().contains("onnx::MatMul_3"), e.getMessage());
    }

    @Test
    void rejectsInconsistentTensorsAndNonModels() throws Exception {
        byte[] bad = model(List.of(), List.of(rawTensor("t", new long[] {5}, new float[] {1, 2})));
        KilnException e = assertThrows(KilnException.class,
                () -> OnnxModelReader.read(new ByteArrayInputStream(bad), "bad.onnx"));
        assertTrue(e.getMessage().contains("'t'") && e.getMessage().contains("bad.onnx"), e.getMessage());
        byte[] noGraph = message(o -> o.writeString(2, "producer"));
        e = assertThrows(KilnException.class,
                () -> OnnxModelReader.read(new ByteArrayInputStream(noGraph), "empty.onnx"));
        assertTrue(e.getMessage().contains("no graph"), e.getMessage());
        byte[] missing = model(List.of(), List.of(packedTensor("x", new long[] {1}, new float[] {1})));
        OnnxGraph g = OnnxModelReader.read(new ByteArrayInputStream(missing), "m.onnx");
        e = assertThrows(KilnException.class, () -> BertWeights.fromOnnx(g));
        assertTrue(e.getMessage().contains("embeddings.word_embeddings.weight"), e.getMessage());
    }
}
