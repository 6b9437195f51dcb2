package dev.kiln.core.fisher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Fisher of tiny classifiers against float64 references written here: an analytic gradient for a linear softmax
 * model and central finite differences for a one-hidden-layer MLP loaded from a trained, normalised checkpoint.
 */
class FisherEstimatorTest {
    static final int C = 1;
    static final int H = 2;
    static final int W = 3;
    static final int D = C * H * W;
    static final int K = 3;

    @TempDir
    static Path dir;

    static NDManager manager;

    @BeforeAll
    static void start() {
        manager = NDManager.newBaseManager();
    }

    @AfterAll
    static void stop() {
        manager.close();
    }

    /** Random samples with labels that depend on the inputs, so training has something to learn. */
    static ImageDataset data(int n, long seed) {
        Random r = new Random(seed);
        float[] x = new float[n * D];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            double best = Double.NEGATIVE_INFINITY;
            for (int d = 0; d < D; d++) {
                x[i * D + d] = (float) (r.nextGaussian() * 2 + 1);
            }
            for (int k = 0; k < K; k++) {
                double score = x[i * D + k] + 0.5 * r.nextGaussian();
                if (score > best) {
                    best = score;
                    y[i] = k;
                }
            }
        }
        return new ImageDataset(x, y, C, H, W, List.of("a", "b", "c"), "sha-" + seed, "test data " + seed);
    }

    static double[] doubles(NDArray a) {
        float[] f = a.toFloatArray();
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /** log softmax of z, in float64. */
    static double[] logSoftmax(double[] z) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : z) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (double v : z) {
            sum += Math.exp(v - max);
        }
        double[] out = new double[z.length];
        for (int k = 0; k < z.length; k++) {
            out[k] = z[k] - max - Math.log(sum);
        }
        return out;
    }

    @Test
    void linearSoftmaxMatchesTheAnalyticGradient() {
        ImageDataset data = data(10, 1);
        try (NDManager scope = manager.newSubManager()) {
            KilnModel model = ModelZoo.build("mlp", Map.of("hidden", ""), new Shape(C, H, W), K).initialize(scope, 3);
            double[] w = doubles(model.parameters().get("head.weight").getArray());
            double[] b = doubles(model.parameters().get("head.bias").getArray());
            // N equal to the data size: the reference is the mean over all samples, independent of the choice order.
            Map<String, NDArray> fisher = FisherEstimator.estimate(model, data,
                    new FisherEstimator.Settings(10, FisherEstimator.Mode.EMPIRICAL, 9), scope);
            double[] fw = new double[K * D];
            double[] fb = new double[K];
            for (int i = 0; i < data.size(); i++) {
                double[] z = new double[K];
                for (int k = 0; k < K; k++) {
                    z[k] = b[k];
                    for (int d = 0; d < D; d++) {
                        z[k] += w[k * D + d] * data.values()[i * D + d];
                    }
                }
                double[] logp = logSoftmax(z);
                for (int k = 0; k < K; k++) {
                    // d log p(y|x) / d z_k = [k == y] - p_k; the weight gradient is that times x_d.
                    double g = (k == data.labels()[i] ? 1 : 0) - Math.exp(logp[k]);
                    fb[k] += g * g / data.size();
                    for (int d = 0; d < D; d++) {
                        double gw = g * data.values()[i * D + d];
                        fw[k * D + d] += gw * gw / data.size();
                    }
                }
            }
            assertClose(fb, doubles(fisher.get("head.bias")), "head.bias");
            assertClose(fw, doubles(fisher.get("head.weight")), "head.weight");
            assertEquals(new Shape(K, D), fisher.get("head.weight").getShape());
        }
    }

    @Test
    void subsetUsesTheSeededChoiceAndTrueModeSamplesALabel() {
        ImageDataset data = data(12, 2);
        try (NDManager scope = manager.newSubManager()) {
            KilnModel model = ModelZoo.build("mlp", Map.of("hidden", ""), new Shape(C, H, W), K).initialize(scope, 4);
            double[] w = doubles(model.parameters().get("head.weight").getArray());
            double[] b = doubles(model.parameters().get("head.bias").getArray());
            double[][] logp = new double[data.size()][];
            for (int i = 0; i < data.size(); i++) {
                double[] z = new double[K];
                for (int k = 0; k < K; k++) {
                    z[k] = b[k];
                    for (int d = 0; d < D; d++) {
                        z[k] += w[k * D + d] * data.values()[i * D + d];
                    }
                }
                logp[i] = logSoftmax(z);
            }
            // Empirical on 5 of 12: the 5 samples must be the seeded permutation's first five.
            int[] order = ImageDataset.permutation(12, 77);
            double[] want = new double[K];
            for (int j = 0; j < 5; j++) {
                int i = order[j];
                for (int k = 0; k < K; k++) {
                    double g = (k == data.labels()[i] ? 1 : 0) - Math.exp(logp[i][k]);
                    want[k] += g * g / 5;
                }
            }
            Map<String, NDArray> emp = FisherEstimator.estimate(model, data,
                    new FisherEstimator.Settings(5, FisherEstimator.Mode.EMPIRICAL, 77), scope);
            assertClose(want, doubles(emp.get("head.bias")), "head.bias (5 samples)");

            // True mode on a single sample: the bias Fisher is (e_y - p)^2 for one of the K labels y.
            ImageDataset one = data.subset(new int[] {3});
            int matches = 0;
            for (long seed = 0; seed < 6; seed++) {
                double[] got = doubles(FisherEstimator.estimate(model, one,
                        new FisherEstimator.Settings(1, FisherEstimator.Mode.TRUE, seed), scope).get("head.bias"));
                boolean some = false;
                for (int y = 0; y < K; y++) {
                    boolean all = true;
                    for (int k = 0; k < K; k++) {
                        double g = (k == y ? 1 : 0) - Math.exp(logp[3][k]);
                        all &= Math.abs(g * g - got[k]) <= 1e-5;
                    }
                    some |= all;
                }
                assertTrue(some, "true-mode Fisher is not (e_y - p)^2 for any label y: " + java.util.Arrays
                        .toString(got));
                matches++;
            }
            assertEquals(6, matches);
            double[] a = doubles(FisherEstimator.estimate(model, data,
                    new FisherEstimator.Settings(12, FisherEstimator.Mode.TRUE, 5), scope).get("head.weight"));
            double[] again = doubles(FisherEstimator.estimate(model, data,
                    new FisherEstimator.Settings(12, FisherEstimator.Mode.TRUE, 5), scope).get("head.weight"));
            assertClose(a, again, "true mode with the same seed");
        }
    }

    /** The one-hidden-layer MLP's log p(y|x) in float64, parameters flattened in the order fc1.w, fc1.b, head.w, head.b. */
    static double logLikelihood(double[] theta, int hidden, double[] x, int y) {
        double[] h = new double[hidden];
        for (int j = 0; j < hidden; j++) {
            double s = theta[D * hidden + j];
            for (int d = 0; d < D; d++) {
                s += theta[j * D + d] * x[d];
            }
            h[j] = Math.max(0, s);
        }
        int o = D * hidden + hidden;
        double[] z = new double[K];
        for (int k = 0; k < K; k++) {
            double s = theta[o + K * hidden + k];
            for (int j = 0; j < hidden; j++) {
                s += theta[o + k * hidden + j] * h[j];
            }
            z[k] = s;
        }
        return logSoftmax(z)[y];
    }

    @Test
    void trainedCheckpointMatchesFiniteDifferencesAndIsSavedBesideIt() throws Exception {
        int hidden = 4;
        ImageDataset train = data(24, 5);
        TrainingResult trained;
        Path checkpoint = dir.resolve("mlp-a.safetensors");
        try (NDManager scope = manager.newSubManager()) {
            trained = new TrainingRun(TrainingConfig.builder("mlp").modelParameters(Map.of("hidden", "4")).epochs(2)
                    .batchSize(8).learningRate(0.1).seed(11).threads(1).build(), train, null, null).run(scope);
            TrainingRun.saveModel(trained.model(), trained.metadata(), checkpoint);
        }
        assertTrue(trained.normalization() != null, "the run should normalise, so the estimator must too");
        Path out = FisherEstimator.fisherFile(checkpoint);
        assertEquals("mlp-a.fisher.safetensors", out.getFileName().toString());
        FisherEstimator.Settings settings = new FisherEstimator.Settings(64, FisherEstimator.Mode.EMPIRICAL, 1);
        Map<String, String> meta;
        try (NDManager scope = manager.newSubManager()) {
            meta = FisherEstimator.compute(checkpoint, train, settings, out, scope);
        }
        assertEquals("24", meta.get(FisherEstimator.KEY_SAMPLES));

        // float64 reference: normalise as recorded, central differences of log p(y|x) for every parameter.
        Map<String, double[]> params = new LinkedHashMap<>();
        try (SafetensorsReader r = SafetensorsReader.open(checkpoint)) {
            for (String name : List.of("fc1.weight", "fc1.bias", "head.weight", "head.bias")) {
                float[] f = r.readFloats(name);
                double[] d = new double[f.length];
                for (int i = 0; i < f.length; i++) {
                    d[i] = f[i];
                }
                params.put(name, d);
            }
        }
        int total = params.values().stream().mapToInt(a -> a.length).sum();
        double[] theta = new double[total];
        int at = 0;
        for (double[] p : params.values()) {
            System.arraycopy(p, 0, theta, at, p.length);
            at += p.length;
        }
        double mean = trained.normalization().mean()[0];
        double std = trained.normalization().std()[0];
        double[] fisher = new double[total];
        double eps = 1e-5;
        for (int i = 0; i < train.size(); i++) {
            double[] x = new double[D];
            for (int d = 0; d < D; d++) {
                x[d] = ((double) train.values()[i * D + d] - mean) / std;
            }
            int y = train.labels()[i];
            for (int p = 0; p < total; p++) {
                double keep = theta[p];
                theta[p] = keep + eps;
                double up = logLikelihood(theta, hidden, x, y);
                theta[p] = keep - eps;
                double down = logLikelihood(theta, hidden, x, y);
                theta[p] = keep;
                double g = (up - down) / (2 * eps);
                fisher[p] += g * g / train.size();
            }
        }
        try (SafetensorsReader r = SafetensorsReader.open(out)) {
            assertEquals(FisherEstimator.FORMAT, r.metadata().get("kiln.format"));
            assertEquals("empirical", r.metadata().get(FisherEstimator.KEY_MODE));
            assertEquals(train.sha256(), r.metadata().get(FisherEstimator.KEY_DATA));
            assertEquals(new java.util.TreeSet<>(params.keySet()), new java.util.TreeSet<>(r.names()));
            at = 0;
            for (Map.Entry<String, double[]> e : params.entrySet()) {
                float[] got = r.readFloats(e.getKey());
                double[] want = java.util.Arrays.copyOfRange(fisher, at, at + e.getValue().length);
                double[] g = new double[got.length];
                for (int i = 0; i < got.length; i++) {
                    g[i] = got[i];
                }
                assertClose(want, g, e.getKey());
                at += e.getValue().length;
            }
        }
        assertTrue(FisherEstimator.isUpToDate(out, checkpoint, train, settings));
        assertFalse(FisherEstimator.isUpToDate(out, checkpoint, train,
                new FisherEstimator.Settings(64, FisherEstimator.Mode.TRUE, 1)));
        assertFalse(FisherEstimator.isUpToDate(out, checkpoint, data(24, 6), settings));
    }

    @Test
    void badInputIsNamed() {
        ImageDataset data = data(4, 3);
        try (NDManager scope = manager.newSubManager()) {
            KilnModel model = ModelZoo.build("mlp", Map.of("hidden", ""), new Shape(C, H, W), 4).initialize(scope, 1);
            String m = assertThrows(KilnException.class, () -> FisherEstimator.estimate(model, data,
                    FisherEstimator.Settings.defaults(), scope)).getMessage();
            assertTrue(m.contains("3 classes") && m.contains("4 outputs"), m);
        }
        String m = assertThrows(KilnException.class, () -> new FisherEstimator.Settings(0,
                FisherEstimator.Mode.EMPIRICAL, 1)).getMessage();
        assertTrue(m.contains("at least 1") && m.contains("0"), m);
        m = assertThrows(KilnException.class, () -> FisherEstimator.Mode.parse("emprical")).getMessage();
        assertTrue(m.contains("'emprical'") && m.contains("empirical"), m);
        assertEquals(FisherEstimator.Mode.TRUE, FisherEstimator.Mode.parse(" TRUE "));
        m = assertThrows(KilnException.class, () -> FisherEstimator.compute(dir.resolve("none.safetensors"), data,
                FisherEstimator.Settings.defaults(), dir.resolve("none.fisher.safetensors"), manager)).getMessage();
        assertTrue(m.contains("none.safetensors"), m);
    }

    static void assertClose(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what + " length");
        double scale = 0;
        for (double v : want) {
            scale = Math.max(scale, Math.abs(v));
        }
        assertTrue(scale > 0, what + ": reference is all zero, the test could not fail");
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-4 * scale + 1e-7, what + "[" + i + "]");
        }
    }
}
