package dev.kiln.core.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Parameter;
import ai.djl.nn.core.Linear;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import dev.kiln.spi.KilnException;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class TrainMathTest {

    @Test
    void scheduleMatchesHandComputedValues() {
        WarmupCosineSchedule s = new WarmupCosineSchedule(0.1, 0.01, 4, 14);
        assertEquals(0.025, s.at(0), 1e-12);
        assertEquals(0.05, s.at(1), 1e-12);
        assertEquals(0.1, s.at(3), 1e-12);
        assertEquals(0.1, s.at(4), 1e-12);
        // cosine phase spans steps 4..13 (9 intervals): step 7 is 1/3 of the way, cos(pi/3) = 0.5
        assertEquals(0.01 + 0.09 * 0.75, s.at(7), 1e-12);
        assertEquals(0.01 + 0.09 * 0.25, s.at(10), 1e-12);
        assertEquals(0.01, s.at(13), 1e-12);
        assertEquals(0.01, s.at(50), 1e-12);
        assertEquals((float) (0.01 + 0.09 * 0.75), s.getNewValue(7));
        WarmupCosineSchedule plain = new WarmupCosineSchedule(1, 0, 0, 3);
        assertEquals(1.0, plain.at(0), 1e-12);
        assertEquals(0.5, plain.at(1), 1e-12);
        assertEquals(0.0, plain.at(2), 1e-12);
        assertEquals(2.0, new WarmupCosineSchedule(2, 0, 0, 1).at(0), 1e-12);
        for (long step = 0; step < 14; step++) {
            assertTrue(s.at(step) <= 0.1 + 1e-12 && s.at(step) >= 0.01 - 1e-12);
        }
    }

    @Test
    void softTargetCrossEntropyMatchesFloat64Reference() {
        Random random = new Random(3);
        int n = 7;
        int k = 5;
        float[] logits = new float[n * k];
        float[] targets = new float[n * k];
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int j = 0; j < k; j++) {
                logits[i * k + j] = (float) (4 * random.nextGaussian());
                targets[i * k + j] = random.nextFloat();
                sum += targets[i * k + j];
            }
            for (int j = 0; j < k; j++) {
                targets[i * k + j] /= (float) sum;
            }
        }
        double expected = 0;
        for (int i = 0; i < n; i++) {
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < k; j++) {
                max = Math.max(max, logits[i * k + j]);
            }
            double z = 0;
            for (int j = 0; j < k; j++) {
                z += Math.exp(logits[i * k + j] - max);
            }
            double logZ = max + Math.log(z);
            for (int j = 0; j < k; j++) {
                expected -= targets[i * k + j] * (logits[i * k + j] - logZ);
            }
        }
        expected /= n;
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray l = m.create(logits, new Shape(n, k));
            NDArray t = m.create(targets, new Shape(n, k));
            assertEquals(expected, SoftTargetLoss.crossEntropy(l, t).getFloat(), 1e-5);
            // One-hot targets give the negative log-likelihood of the labelled class.
            NDArray oneHot = m.create(new long[] {2, 0, 4, 1, 1, 3, 0}).oneHot(k);
            double nll = 0;
            long[] labels = {2, 0, 4, 1, 1, 3, 0};
            for (int i = 0; i < n; i++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < k; j++) {
                    max = Math.max(max, logits[i * k + j]);
                }
                double z = 0;
                for (int j = 0; j < k; j++) {
                    z += Math.exp(logits[i * k + j] - max);
                }
                nll -= logits[i * k + (int) labels[i]] - max - Math.log(z);
            }
            assertEquals(nll / n, SoftTargetLoss.crossEntropy(l, oneHot).getFloat(), 1e-5);
            assertThrows(KilnException.class, () -> SoftTargetLoss.crossEntropy(l, m.zeros(new Shape(n, k + 1))));
        }
    }

    /** A real DJL parameter whose gradient after backward of sum(W * c) is exactly c. */
    private static Parameter parameter(NDManager m, float[] init) {
        Linear linear = Linear.builder().setUnits(init.length).optBias(false).build();
        linear.initialize(m, DataType.FLOAT32, new Shape(1, 1));
        Parameter p = linear.getParameters().get(0).getValue();
        p.getArray().set(init);
        p.getArray().setRequiresGradient(true);
        return p;
    }

    private static void backward(Parameter p, float[] c, NDManager m) {
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            gc.backward(p.getArray().mul(m.create(c, p.getArray().getShape())).sum());
        }
    }

    @Test
    void optimisersMatchFloat64References() {
        float[] init = {0.5f, -1.25f, 2f};
        float[][] grads = {{0.1f, -0.3f, 0.7f}, {-0.2f, 0.4f, 0.05f}, {1.5f, -0.1f, 0.3f}};
        double[] lrs = {0.1, 0.05, 0.2};
        try (NDManager m = NDManager.newBaseManager()) {
            // SGD, momentum 0.9, Nesterov, L2 weight decay 0.01 (PyTorch's rule).
            Parameter p = parameter(m, init);
            SgdOptimizer sgd = new SgdOptimizer(0.9, true, 0.01);
            double[] w = {0.5, -1.25, 2};
            double[] buf = new double[3];
            for (int s = 0; s < 3; s++) {
                backward(p, grads[s], m);
                sgd.step(Map.of("w", p), lrs[s], s);
                JniUtils.zeroGrad((PtNDArray) p.getArray());
                for (int i = 0; i < 3; i++) {
                    double g = grads[s][i] + 0.01 * w[i];
                    buf[i] = s == 0 ? g : 0.9 * buf[i] + g;
                    w[i] -= lrs[s] * (g + 0.9 * buf[i]);
                }
            }
            float[] got = p.getArray().toFloatArray();
            for (int i = 0; i < 3; i++) {
                assertEquals(w[i], got[i], 1e-6);
            }
            assertEquals(1, sgd.state().size());

            // AdamW with decoupled weight decay 0.1.
            Parameter q = parameter(m, init);
            AdamWOptimizer adam = new AdamWOptimizer(0.9, 0.999, 1e-8, 0.1);
            double[] v = {0.5, -1.25, 2};
            double[] m1 = new double[3];
            double[] m2 = new double[3];
            for (int s = 0; s < 3; s++) {
                backward(q, grads[s], m);
                adam.step(Map.of("w", q), lrs[s], s);
                JniUtils.zeroGrad((PtNDArray) q.getArray());
                for (int i = 0; i < 3; i++) {
                    double g = grads[s][i];
                    v[i] *= 1 - lrs[s] * 0.1;
                    m1[i] = 0.9 * m1[i] + 0.1 * g;
                    m2[i] = 0.999 * m2[i] + 0.001 * g * g;
                    double mh = m1[i] / (1 - Math.pow(0.9, s + 1));
                    double vh = m2[i] / (1 - Math.pow(0.999, s + 1));
                    v[i] -= lrs[s] * mh / (Math.sqrt(vh) + 1e-8);
                }
            }
            got = q.getArray().toFloatArray();
            for (int i = 0; i < 3; i++) {
                assertEquals(v[i], got[i], 1e-5);
            }
            assertEquals(2, adam.state().size());
        }
    }

    @Test
    void configRejectsBadValuesByName() {
        KilnException e = assertThrows(KilnException.class,
                () -> TrainingConfig.builder("cnn").optimizer("adam").build());
        assertTrue(e.getMessage().contains("'optimizer'") && e.getMessage().contains("adamw"), e.getMessage());
        e = assertThrows(KilnException.class, () -> TrainingConfig.builder("cnn").learningRate(-1).build());
        assertTrue(e.getMessage().contains("'learningRate'") && e.getMessage().contains("-1"), e.getMessage());
        e = assertThrows(KilnException.class, () -> TrainingConfig.builder("cnn").epochs(0).build());
        assertTrue(e.getMessage().contains("'epochs'"), e.getMessage());
        e = assertThrows(KilnException.class, () -> TrainingConfig.builder("cnn").resume(true).build());
        assertTrue(e.getMessage().contains("'resume'"), e.getMessage());
    }
}
