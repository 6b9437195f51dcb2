package dev.kiln.core.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** BCE with soft targets against a float64 reference written here, including extreme logits. */
class BinaryCrossEntropyTest {

    /** mean over all elements of -(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), in float64. */
    private static double reference(double[] x, double[] t) {
        double sum = 0;
        for (int i = 0; i < x.length; i++) {
            double logSig = -Math.log1p(Math.exp(-Math.abs(x[i]))) + Math.min(x[i], 0);
            double logOneMinusSig = -Math.log1p(Math.exp(-Math.abs(x[i]))) + Math.min(-x[i], 0);
            sum += -(t[i] * logSig + (1 - t[i]) * logOneMinusSig);
        }
        return sum / x.length;
    }

    @Test
    void matchesTheFloat64ReferenceOnSoftAndThresholdedTargets() {
        Random random = new Random(5);
        int n = 6;
        int k = 7;
        double[] x = new double[n * k];
        double[] t = new double[n * k];
        float[] xf = new float[n * k];
        float[] tf = new float[n * k];
        for (int i = 0; i < x.length; i++) {
            xf[i] = (float) (random.nextGaussian() * 4);
            tf[i] = random.nextFloat();
            x[i] = xf[i];
            t[i] = tf[i];
        }
        xf[0] = 80f; // exp(80) overflows float32: the stable form must stay finite
        x[0] = 80;
        xf[1] = -80f;
        x[1] = -80;
        try (NDManager manager = NDManager.newBaseManager()) {
            NDArray logits = manager.create(xf, new Shape(n, k));
            NDArray targets = manager.create(tf, new Shape(n, k));
            double soft = SoftTargetLoss.binaryCrossEntropy(logits, targets, -1).getFloat();
            assertEquals(reference(x, t), soft, 1e-5 * Math.max(1, Math.abs(soft)));

            double[] binary = new double[t.length];
            for (int i = 0; i < t.length; i++) {
                binary[i] = t[i] > 0.3 ? 1 : 0;
            }
            double thresholded = SoftTargetLoss.binaryCrossEntropy(logits, targets, 0.3).getFloat();
            assertEquals(reference(x, binary), thresholded, 1e-5 * Math.max(1, Math.abs(thresholded)));
            assertTrue(Double.isFinite(soft));

            KilnException e = assertThrows(KilnException.class,
                    () -> SoftTargetLoss.binaryCrossEntropy(logits, targets.reshape(k, n), -1));
            assertTrue(e.getMessage().contains("(N, K)"), e.getMessage());
        }
    }

    @Test
    void configRejectsAnUnknownLoss() {
        KilnException e = assertThrows(KilnException.class,
                () -> TrainingConfig.builder("cnn").loss("hinge").build());
        assertTrue(e.getMessage().contains("cross-entropy, bce"), e.getMessage());
    }
}
