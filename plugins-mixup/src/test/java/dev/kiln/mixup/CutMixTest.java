package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class CutMixTest {
    private static final int H = 7;
    private static final int W = 12;
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    /** Every pixel of sample i holds i + 1 in every channel: any two distinct samples differ everywhere. */
    private NDArray constantImages(int n, int c) {
        float[] v = new float[n * c * H * W];
        for (int i = 0; i < v.length; i++) {
            v[i] = i / (c * H * W) + 1;
        }
        return manager.create(v, new Shape(n, c, H, W));
    }

    /** Summary of one sample's changed region: count and bounding box; checks it is a filled rectangle. */
    private static int[] changedBox(double[] before, double[] after, int sample, int channels) {
        int y0 = H;
        int y1 = -1;
        int x0 = W;
        int x1 = -1;
        int count = 0;
        boolean[][] changed = new boolean[H][W];
        for (int y = 0; y < H; y++) {
            for (int x = 0; x < W; x++) {
                int base = ((sample * channels) * H + y) * W + x;
                boolean diff = before[base] != after[base];
                for (int ch = 1; ch < channels; ch++) {
                    int off = base + ch * H * W;
                    assertEquals(diff, before[off] != after[off], "all channels share the box");
                }
                if (diff) {
                    changed[y][x] = true;
                    count++;
                    y0 = Math.min(y0, y);
                    y1 = Math.max(y1, y);
                    x0 = Math.min(x0, x);
                    x1 = Math.max(x1, x);
                }
            }
        }
        if (count > 0) {
            assertEquals((y1 - y0 + 1) * (x1 - x0 + 1), count, "changed pixels form a filled rectangle");
        }
        return new int[] {count, y0, y1 + 1, x0, x1 + 1};
    }

    private void checkChangedFractionEqualsOneMinusLambda(String mode, int n) {
        Augmentation aug = Fixtures.create("cutmix", Map.of("alpha", "1.0", "mode", mode));
        int clipped = 0;
        int interior = 0;
        for (long seed = 0; seed < 60; seed++) {
            try (NDManager sub = manager.newSubManager()) {
                NDArray x = constantImages(n, 3);
                x.attach(sub);
                long[] y = new long[n];
                for (int i = 0; i < n; i++) {
                    y[i] = i;
                }
                double[] before = Fixtures.host(x);
                MixedBatch out = Fixtures.mix(aug, x, sub.create(y), n, seed);
                double[] after = Fixtures.host(out.inputs());
                double[][] t = Fixtures.rows(out.targets());
                for (int i = 0; i < n; i++) {
                    int partner = Fixtures.partner(i, n);
                    int[] box = changedBox(before, after, i, 3);
                    double changedFraction = box[0] / (double) (H * W);
                    if (partner == i) {
                        assertEquals(0, box[0], "a sample paired with itself shows no change");
                        assertEquals(1.0, t[i][i], 1e-6);
                        continue;
                    }
                    double lam = t[i][i];
                    assertEquals(1 - lam, changedFraction, 1e-6, "seed " + seed + " sample " + i);
                    assertEquals(1 - lam, t[i][partner], 1e-6, "partner share");
                    // the pasted pixels come from the partner
                    if (box[0] > 0) {
                        int p = ((i * 3) * H + box[1]) * W + box[3];
                        assertEquals(partner + 1, after[p], 0.0);
                        boolean touches = box[1] == 0 || box[2] == H || box[3] == 0 || box[4] == W;
                        if (touches) {
                            clipped++;
                        } else {
                            interior++;
                            // an unclipped box is 2*(int(H r)/2) by 2*(int(W r)/2): the sides keep the image's
                            // aspect ratio, which a swapped H and W would break on this 7 x 12 image
                            int h = box[2] - box[1];
                            int w = box[4] - box[3];
                            assertEquals(h / (double) H, w / (double) W, 2.0 / H + 2.0 / W,
                                    "box " + h + "x" + w + " keeps H and W apart");
                            assertEquals(0, h % 2, "unclipped side is even");
                            assertEquals(0, w % 2, "unclipped side is even");
                        }
                    }
                }
            }
        }
        assertTrue(clipped > 5, "border-clipped boxes were exercised: " + clipped);
        assertTrue(interior > 5, "interior boxes were exercised: " + interior);
    }

    @Test
    void batchModeChangedFractionIsOneMinusCorrectedLambda() {
        checkChangedFractionEqualsOneMinusLambda("batch", 4);
    }

    @Test
    void elemModeChangedFractionIsOneMinusCorrectedLambdaPerSample() {
        checkChangedFractionEqualsOneMinusLambda("elem", 5);
    }

    @Test
    void batchModeUsesOneBoxForAllSamples() {
        NDArray x = constantImages(4, 1);
        double[] before = Fixtures.host(x);
        MixedBatch out = Fixtures.mix(Fixtures.create("cutmix", Map.of()), x,
                manager.create(new long[] {0, 1, 2, 3}), 4, 42);
        double[] after = Fixtures.host(out.inputs());
        int[] first = changedBox(before, after, 0, 1);
        for (int i = 1; i < 4; i++) {
            assertTrue(java.util.Arrays.equals(first, changedBox(before, after, i, 1)), "same box for sample " + i);
        }
    }

    @Test
    void boxFollowsTimmRandBbox() {
        // Hand-computed: H=7, W=12, ratio 0.5 gives cut 3 x 6, half-sides 1 and 3 around the drawn centre.
        java.util.random.RandomGenerator fixed = new java.util.random.RandomGenerator() {
            private final int[] values = {0, 11};
            private int next;

            @Override
            public long nextLong() {
                throw new UnsupportedOperationException();
            }

            @Override
            public int nextInt(int bound) {
                return values[next++];
            }
        };
        int[] box = Mixing.box(fixed, H, W, 0.5);
        assertTrue(java.util.Arrays.equals(new int[] {0, 1, 8, 12}, box), java.util.Arrays.toString(box));
        assertEquals(1 - 4.0 / 84, Mixing.keptFraction(box, H, W), 1e-12);
    }
}
