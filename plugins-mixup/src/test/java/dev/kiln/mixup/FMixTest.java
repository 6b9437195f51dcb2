package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class FMixTest {
    private static final int H = 16;
    private static final int W = 24;
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    /**
     * Two images, all ones and all zeros, paired with each other (every fixed pairing pairs the two of a batch of 2): the mixed first image is the mask itself (1 where the sample
     * is kept), the second its complement.
     */
    private double[][] masks(String mode, long seed, double alpha) {
        float[] v = new float[2 * H * W];
        java.util.Arrays.fill(v, 0, H * W, 1f);
        NDArray x = manager.create(v, new Shape(2, 1, H, W));
        MixedBatch out = Fixtures.mix(Fixtures.create("fmix", Map.of("alpha", Double.toString(alpha),
                "mode", mode)), x, manager.create(new long[] {0, 1}), 2, seed);
        double[] flat = Fixtures.host(out.inputs());
        double[][] t = Fixtures.rows(out.targets());
        double[] m0 = java.util.Arrays.copyOfRange(flat, 0, H * W);
        double[] m1 = java.util.Arrays.copyOfRange(flat, H * W, 2 * H * W);
        return new double[][] {m0, m1, {t[0][0], t[1][1]}};
    }

    @Test
    void maskHasExactlyRoundLambdaHwOnes() {
        for (long seed = 0; seed < 10; seed++) {
            double[][] r = masks("batch", seed, 1.0);
            // Replays the documented draw order: the default pairing draws nothing, then one Beta per mask.
            double lam = BetaSampler.beta(new Random(seed), 1.0, 1.0);
            long expected = Math.round(lam * H * W);
            long ones = 0;
            for (double v : r[0]) {
                assertTrue(v == 0 || v == 1, "binary mask");
                ones += (long) v;
            }
            assertEquals(expected, ones, "seed " + seed);
            // target lambda is exactly the mask mean; the partner's share of sample 1 is the complement mask
            assertEquals(ones / (double) (H * W), r[2][0], 1e-6);
            long partnerOnes = 0;
            for (double v : r[1]) {
                partnerOnes += (long) v;
            }
            assertEquals(H * W - ones, partnerOnes, "sample 1 keeps the same mask, so shows the partner elsewhere");
        }
    }

    @Test
    void elemModeMasksEachHaveTheirOwnExactCount() {
        for (long seed = 0; seed < 5; seed++) {
            double[][] r = masks("elem", seed, 1.0);
            Random replay = new Random(seed);
            double lam0 = BetaSampler.beta(replay, 1.0, 1.0);
            double lam1 = BetaSampler.beta(replay, 1.0, 1.0);
            long ones0 = 0;
            long ones1 = 0;
            for (int p = 0; p < H * W; p++) {
                ones0 += (long) r[0][p];
                ones1 += (long) (1 - r[1][p]);
            }
            assertEquals(Math.round(lam0 * H * W), ones0);
            assertEquals(Math.round(lam1 * H * W), ones1);
            assertEquals(ones0 / (double) (H * W), r[2][0], 1e-6);
            assertEquals(ones1 / (double) (H * W), r[2][1], 1e-6);
        }
    }

    /** Share of the (mean-removed) mask's spectral energy at radial frequency below {@code cutoff} cycles/pixel. */
    private static double lowFrequencyShare(double[] mask, double cutoff) {
        double mean = 0;
        for (double v : mask) {
            mean += v;
        }
        mean /= mask.length;
        double low = 0;
        double total = 0;
        for (int u = 0; u < H; u++) {
            for (int v = 0; v < W; v++) {
                double re = 0;
                double im = 0;
                for (int y = 0; y < H; y++) {
                    for (int x = 0; x < W; x++) {
                        double angle = -2 * Math.PI * ((double) u * y / H + (double) v * x / W);
                        double value = mask[y * W + x] - mean;
                        re += value * Math.cos(angle);
                        im += value * Math.sin(angle);
                    }
                }
                double power = re * re + im * im;
                double fu = (u <= H / 2 ? u : u - H) / (double) H;
                double fv = (v <= W / 2 ? v : v - W) / (double) W;
                total += power;
                if (Math.sqrt(fu * fu + fv * fv) < cutoff) {
                    low += power;
                }
            }
        }
        return low / total;
    }

    @Test
    void masksAreLowFrequencyUnlikeRandomMasksOfTheSameCount() {
        Random shuffle = new Random(99);
        for (long seed = 20; seed < 24; seed++) {
            double[] mask = masks("batch", seed, 1.0)[0];
            long ones = java.util.Arrays.stream(mask).filter(v -> v == 1).count();
            if (ones < H * W / 10 || ones > H * W * 9 / 10) {
                continue;
            }
            double[] random = mask.clone();
            for (int i = random.length - 1; i > 0; i--) {
                int j = shuffle.nextInt(i + 1);
                double t = random[i];
                random[i] = random[j];
                random[j] = t;
            }
            double fmix = lowFrequencyShare(mask, 0.15);
            double scattered = lowFrequencyShare(random, 0.15);
            assertTrue(fmix > 0.6, "fmix low-frequency share " + fmix);
            assertTrue(fmix > scattered + 0.4, "fmix " + fmix + " vs random " + scattered);
        }
    }

    @Test
    void lowPassNoiseIsRealAndHasRequestedShape() {
        manager.getEngine().setRandomSeed(1);
        NDArray noise = FMix.lowPassNoise(manager, 3, 5, 7, 3.0);
        assertEquals(new Shape(3, 5, 7), noise.getShape());
        double[] v = Fixtures.host(noise);
        for (double d : v) {
            assertTrue(Double.isFinite(d));
        }
    }
}
