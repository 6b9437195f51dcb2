package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
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

    /** The kept-pixel mask (1 = the sample's own) and the target lambda of one batch-mode call on the 1/0 pair. */
    private double[] maskOf(FMix fmix, MixContext context) {
        float[] v = new float[2 * H * W];
        java.util.Arrays.fill(v, 0, H * W, 1f);
        try (NDManager sub = manager.newSubManager()) {
            NDArray x = sub.create(v, new Shape(2, 1, H, W));
            MixedBatch out = fmix.mix(new Batch(x, sub.create(new long[] {0, 1}), 2), context);
            double[] mask = java.util.Arrays.copyOf(Fixtures.host(out.inputs()), H * W + 1);
            mask[H * W] = Fixtures.rows(out.targets())[0][0];
            return mask;
        }
    }

    private static FMix smallBank(int size) {
        return new FMix(1.0, 3.0, Mixing.Mode.BATCH, Mixing.Pairing.HALVES, 0.0, -1, size);
    }

    /**
     * Batches drawn across several refills of banks of at most 5 masks follow the documented draw order (banks of 1,
     * 2, 4, 5, 5 masks; per refill its Betas, then the engine seed), each with exactly round(lam H W) kept pixels and
     * that share as its target.
     */
    @Test
    void bankRefillsKeepTheDrawOrderAndExactCounts() {
        FMix fmix = smallBank(5);
        MixContext context = Fixtures.context(5);
        Random replay = new Random(5);
        int[] sizes = {1, 2, 4, 5, 5};
        int batch = 0;
        for (int size : sizes) {
            double[] lam = BetaSampler.symmetric(replay, 1.0, size);
            replay.nextInt();
            for (int i = 0; i < size; i++, batch++) {
                double[] m = maskOf(fmix, context);
                long ones = 0;
                for (int p = 0; p < H * W; p++) {
                    ones += (long) m[p];
                }
                assertEquals(Math.round(lam[i] * H * W), ones, "batch " + batch);
                assertEquals(ones / (double) (H * W), m[H * W], 1e-6, "batch " + batch);
            }
        }
        assertEquals(replay.nextLong(), ((Random) context.random()).nextLong(), "the same draws were consumed");
    }

    @Test
    void sameSeedGivesTheSameBatchesAndTheBankMovesOn() {
        FMix a = smallBank(3);
        FMix b = smallBank(3);
        MixContext ca = Fixtures.context(11);
        MixContext cb = Fixtures.context(11);
        double[] first = null;
        for (int i = 0; i < 5; i++) {
            double[] ma = maskOf(a, ca);
            assertArrayEquals(ma, maskOf(b, cb), "batch " + i);
            if (i == 0) {
                first = ma;
            } else {
                assertFalse(java.util.Arrays.equals(first, ma), "each batch takes a new mask");
            }
        }
    }

    /**
     * The trainer's resume in miniature: one fresh source per epoch derived from the seed, two batches per epoch
     * against a 3-mask bank (so epoch 0 leaves a partly used bank). A run resumed at epoch 1 with a fresh FMix must
     * see the same epoch-1 batches as the uninterrupted run, which holds only if a new source discards the bank.
     */
    @Test
    void anEpochOrSourceChangeDiscardsTheBankSoResumeMatches() {
        FMix straight = smallBank(3);
        double[][] uninterrupted = new double[2][];
        for (int epoch = 0; epoch < 2; epoch++) {
            Random source = new Random(100 + epoch);
            for (int b = 0; b < 2; b++) {
                double[] m = maskOf(straight, new MixContext(source, epoch, 2, epoch * 2L + b));
                if (epoch == 1) {
                    uninterrupted[b] = m;
                }
            }
        }
        FMix resumed = smallBank(3);
        Random source = new Random(101);
        for (int b = 0; b < 2; b++) {
            assertArrayEquals(uninterrupted[b], maskOf(resumed, new MixContext(source, 1, 2, 2L + b)), "batch " + b);
        }
        // The same source at another epoch also starts a new bank: its first mask is the fresh instance's first.
        FMix reused = smallBank(3);
        Random shared = new Random(7);
        maskOf(reused, new MixContext(shared, 0, 2, 0));
        Random sharedCopy = new Random(7);
        FMix fresh = smallBank(3);
        maskOf(fresh, new MixContext(sharedCopy, 0, 2, 0));
        assertArrayEquals(maskOf(fresh, new MixContext(sharedCopy, 1, 2, 1)),
                maskOf(reused, new MixContext(shared, 1, 2, 1)));
    }

    /** Odd batches and a single sample take the general path (gather, then the mask); counts stay exact. */
    @Test
    void oddBatchesAndSingleSamplesMixWithTheirPartners() {
        for (int n : new int[] {1, 3, 5}) {
            Augmentation fmix = Fixtures.create("fmix", Map.of());
            for (long seed = 0; seed < 3; seed++) {
                try (NDManager sub = manager.newSubManager()) {
                    NDArray x = Fixtures.images(sub, new Random(seed), n, 2, H, W);
                    double[] in = Fixtures.host(x);
                    long[] labels = new long[n];
                    for (int i = 0; i < n; i++) {
                        labels[i] = i;
                    }
                    MixedBatch out = fmix.mix(new Batch(x, sub.create(labels), n), Fixtures.context(seed));
                    double[] got = Fixtures.host(out.inputs());
                    double[][] t = Fixtures.rows(out.targets());
                    for (int i = 0; i < n; i++) {
                        int partner = Fixtures.partner(i, n);
                        long own = 0;
                        for (int p = 0; p < H * W; p++) {
                            boolean mine = true;
                            boolean theirs = true;
                            for (int c = 0; c < 2; c++) {
                                int at = (i * 2 + c) * H * W + p;
                                double g = got[at];
                                mine &= g == in[at];
                                theirs &= Math.abs(g - in[(partner * 2 + c) * H * W + p]) <= 1e-6;
                            }
                            assertTrue(mine || theirs, "n " + n + " sample " + i + " pixel " + p);
                            own += mine && partner != i ? 1 : 0;
                        }
                        double rowSum = java.util.Arrays.stream(t[i]).sum();
                        assertEquals(1.0, rowSum, 1e-6);
                        if (partner != i) {
                            assertEquals(own / (double) (H * W), t[i][i], 1e-6, "n " + n + " sample " + i);
                        } else {
                            assertEquals(1.0, t[i][i], 1e-6, "its own partner");
                        }
                    }
                }
            }
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
