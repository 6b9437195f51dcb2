package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Technique;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.Random;

/** Test helpers: technique lookup, seeded contexts, host copies of arrays. */
final class Fixtures {
    private Fixtures() {
    }

    static Technique<?> technique(String id) {
        return new MixupTechniques().techniques().stream().filter(t -> t.id().equals(id)).findFirst().orElseThrow();
    }

    static Augmentation create(String id, Map<String, String> params) {
        return (Augmentation) technique(id).create(Parameters.bind(technique(id), params));
    }

    static MixContext context(long seed) {
        return new MixContext(new Random(seed), 0, 10, 0);
    }

    static MixContext context(long seed, int epoch) {
        return new MixContext(new Random(seed), epoch, 10, 0);
    }

    /** Random float32 images (N, C, H, W) from a seeded Java source, so tests do not depend on engine seeding. */
    static NDArray images(NDManager m, Random r, int n, int c, int h, int w) {
        float[] v = new float[n * c * h * w];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return m.create(v, new Shape(n, c, h, w));
    }

    static NDArray labels(NDManager m, long... y) {
        return m.create(y);
    }

    static double[] host(NDArray a) {
        return a.toType(DataType.FLOAT64, false).toDoubleArray();
    }

    static double[][] rows(NDArray a) {
        double[] flat = host(a);
        int n = (int) a.getShape().get(0);
        int k = flat.length / n;
        double[][] out = new double[n][k];
        for (int i = 0; i < n; i++) {
            System.arraycopy(flat, i * k, out[i], 0, k);
        }
        return out;
    }

    /** The partner of sample i in a batch of n under a fixed pairing ("halves", the default, or "flip"). */
    static int partner(int i, int n, String pairing) {
        if (pairing.equals("flip")) {
            return n - 1 - i;
        }
        int half = n / 2;
        return i < half ? i + half : i < 2 * half ? i - half : i;
    }

    /** The partner of sample i under the default pairing. */
    static int partner(int i, int n) {
        return partner(i, n, "halves");
    }

    static MixedBatch mix(Augmentation aug, NDArray x, NDArray y, int k, long seed) {
        return aug.mix(new Batch(x, y, k), context(seed));
    }
}
