package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Batch;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The fast paths of {@link Mixing} and {@link FMix} against float64 host references and the general paths. */
class MixingTest {
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    @Test
    void halvesPartnersAndTheirDetection() {
        assertArrayEquals(new long[] {3, 4, 5, 0, 1, 2}, Mixing.partners(6, Mixing.Pairing.HALVES, null));
        assertArrayEquals(new long[] {2, 3, 0, 1, 4}, Mixing.partners(5, Mixing.Pairing.HALVES, null));
        assertArrayEquals(new long[] {0}, Mixing.partners(1, Mixing.Pairing.HALVES, null));
        assertTrue(Mixing.isHalfSwap(Mixing.partners(6, Mixing.Pairing.HALVES, null)));
        assertFalse(Mixing.isHalfSwap(Mixing.partners(5, Mixing.Pairing.HALVES, null)), "odd: no product path");
        assertFalse(Mixing.isHalfSwap(Mixing.partners(6, Mixing.Pairing.FLIP, null)));
        assertFalse(Mixing.isHalfSwap(new long[0]));
    }

    @Test
    void mixHalvesMatchesFloat64Reference() {
        int n = 6;
        int per = 12;
        double lam = 0.3;
        double scale = 0.9;
        for (DataType dtype : List.of(DataType.FLOAT32, DataType.FLOAT64, DataType.FLOAT16)) {
            NDArray a = Fixtures.images(manager, new Random(5), n, 3, 2, 2).toType(dtype, false);
            double[] host = Fixtures.host(a);
            NDArray out = Mixing.mixHalves(manager, a, lam, scale);
            assertEquals(a.getShape(), out.getShape());
            assertEquals(dtype, out.getDataType());
            double[] got = Fixtures.host(out);
            double tol = dtype == DataType.FLOAT16 ? 1e-2 : 1e-5;
            for (int i = 0; i < n; i++) {
                int j = (i + n / 2) % n;
                for (int p = 0; p < per; p++) {
                    double expected = scale * (lam * host[i * per + p] + (1 - lam) * host[j * per + p]);
                    assertEquals(expected, got[i * per + p], tol, dtype + " sample " + i);
                }
            }
        }
    }

    @Test
    void foldedSmoothingGivesTheSameTargetsAsSmoothThenMix() {
        int n = 6;
        int k = 4;
        double eps = 0.1;
        double lam = 0.35;
        long[] halves = Mixing.partners(n, Mixing.Pairing.HALVES, null);
        NDArray x = Fixtures.images(manager, new Random(1), n, 1, 2, 2);
        NDArray hard = manager.create(new long[] {0, 3, 1, 1, 2, 3});
        NDArray soft = manager.create(new float[] {
            0.5f, 0.5f, 0, 0, 0, 1, 0, 0, 0.25f, 0.25f, 0.25f, 0.25f,
            0, 0, 0, 1, 0.1f, 0.2f, 0.3f, 0.4f, 1, 0, 0, 0}, new Shape(n, k));
        for (NDArray labels : List.of(hard, soft)) {
            Batch batch = new Batch(x, labels, k);
            double[][] onehot = Fixtures.rows(batch.softTargets());
            double[][] got = Fixtures.rows(Mixing.mixedTargets(manager, batch, eps, halves, Mixing.filled(n, lam)));
            for (int i = 0; i < n; i++) {
                int j = (int) halves[i];
                for (int c = 0; c < k; c++) {
                    double si = (1 - eps) * onehot[i][c] + eps / k;
                    double sj = (1 - eps) * onehot[j][c] + eps / k;
                    assertEquals(lam * si + (1 - lam) * sj, got[i][c], 1e-6, "row " + i + " class " + c);
                }
            }
        }
    }

    @Test
    void mixBothEqualsMixAndMixedTargetsApart() {
        // The shared-matrix path (float32, no smoothing) and the separate-matrix paths (smoothing, float64 inputs)
        // against the two single-purpose calls, for the product path (even, halves) and the general ones.
        int k = 5;
        for (int n : new int[] {4, 5}) {
            for (DataType dtype : List.of(DataType.FLOAT32, DataType.FLOAT64)) {
                for (double eps : new double[] {0, 0.2}) {
                    NDArray x = Fixtures.images(manager, new Random(n), n, 2, 3, 3).toType(dtype, false);
                    long[] y = new long[n];
                    for (int i = 0; i < n; i++) {
                        y[i] = (i * 2L) % k;
                    }
                    Batch batch = new Batch(x, manager.create(y), k);
                    for (long[] partner : partnerLists(n)) {
                        double[] lam = Mixing.filled(n, 0.7);
                        NDArray[] both = Mixing.mixBoth(manager, batch, eps, partner, lam);
                        NDArray inputs = Mixing.blend(manager, x, Mixing.gather(manager, x, partner), lam);
                        NDArray targets = Mixing.mixTargets(manager, Mixing.smoothedTargets(batch, eps), partner, lam);
                        assertEquals(dtype, both[0].getDataType());
                        assertArrayEquals(Fixtures.host(inputs), Fixtures.host(both[0]), 1e-6);
                        assertArrayEquals(Fixtures.host(targets), Fixtures.host(both[1]), 1e-6);
                    }
                }
            }
        }
    }

    /** Every kind of partner list: reversal, halves (even and odd), an explicit permutation. */
    private static List<long[]> partnerLists(int n) {
        return List.of(Mixing.partners(n, Mixing.Pairing.FLIP, null), Mixing.partners(n, Mixing.Pairing.HALVES, null),
                Mixing.partners(n, Mixing.Pairing.PERMUTE, new Random(n)));
    }

    @Test
    void pasteBoxEqualsTheMaskSelect() {
        int h = 7;
        int w = 9;
        int[][] boxes = {{2, 5, 3, 8}, {0, 7, 0, 9}, {0, 1, 8, 9}, {3, 3, 2, 6}, {0, 0, 0, 0}, {6, 7, 0, 4}};
        for (int n : new int[] {1, 5, 6}) {
            NDArray x = Fixtures.images(manager, new Random(n), n, 2, h, w);
            double[] before = Fixtures.host(x);
            for (long[] partner : partnerLists(n)) {
                for (int[] box : boxes) {
                    double[] fast = Fixtures.host(Mixing.pasteBox(manager, x, box, partner));
                    double[] general = Fixtures.host(Mixing.select(Mixing.boxMask(manager, new int[][] {box}, h, w),
                            Mixing.gather(manager, x, partner), x));
                    assertArrayEquals(general, fast, 0.0, Arrays.toString(box) + " " + Arrays.toString(partner));
                }
            }
            assertArrayEquals(before, Fixtures.host(x), 0.0, "inputs unchanged");
        }
    }

    @Test
    void fmixBatchMaskKeepsExactlyTheTopPixelsOfTheNoise() {
        int h = 6;
        int w = 5;
        int pixels = h * w;
        for (DataType dtype : List.of(DataType.FLOAT32, DataType.FLOAT64)) {
            for (int n : new int[] {1, 4, 5}) {
                NDArray x = Fixtures.images(manager, new Random(n), n, 3, h, w).toType(dtype, false);
                double[] host = Fixtures.host(x);
                Random r = new Random(7 + n);
                float[] noiseValues = new float[pixels];
                for (int p = 0; p < pixels; p++) {
                    noiseValues[p] = (float) r.nextGaussian();
                }
                NDArray noise = manager.create(noiseValues, new Shape(1, pixels));
                // host ranking: the keep pixels with the largest noise are the sample's own
                Integer[] order = new Integer[pixels];
                for (int p = 0; p < pixels; p++) {
                    order[p] = p;
                }
                Arrays.sort(order, (a, b) -> Float.compare(noiseValues[b], noiseValues[a]));
                for (long[] partner : partnerLists(n)) {
                    for (int keep : new int[] {0, 1, 11, 15, 16, 29, 30}) {
                        boolean[] own = new boolean[pixels];
                        for (int q = 0; q < keep; q++) {
                            own[order[q]] = true;
                        }
                        NDArray v = FMix.partnerMasks(manager, noise, new long[] {keep}, dtype);
                        assertEquals(dtype, v.getDataType());
                        NDArray pair = NDArrays.stack(new NDList(v, v.neg()), 1).reshape(2, 1, 1, pixels);
                        NDArray out = FMix.applyMask(manager, x, pair, partner);
                        assertEquals(x.getShape(), out.getShape());
                        assertEquals(dtype, out.getDataType());
                        double[] got = Fixtures.host(out);
                        for (int i = 0; i < n; i++) {
                            for (int c = 0; c < 3; c++) {
                                for (int p = 0; p < pixels; p++) {
                                    double mine = host[(i * 3 + c) * pixels + p];
                                    double theirs = host[((int) partner[i] * 3 + c) * pixels + p];
                                    double g = got[(i * 3 + c) * pixels + p];
                                    String where = "keep " + keep + " sample " + i + " pixel " + p;
                                    if (own[p]) {
                                        assertEquals(mine, g, 0.0, where);
                                    } else {
                                        // x + (x' - x): the difference rounds by at most one ulp of the larger
                                        // magnitude, so the sum lands within two of x'
                                        double ulp = dtype == DataType.FLOAT32
                                                ? Math.ulp((float) Math.max(Math.abs(mine), Math.abs(theirs)))
                                                : Math.ulp(Math.max(Math.abs(mine), Math.abs(theirs)));
                                        assertEquals(theirs, g, 2 * ulp, where);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * Noise with many equal values (rounded Gaussians): the threshold value occurs several times, so the batched
     * comparison alone would keep too many pixels and the exact ranking must take over. Every mask still keeps
     * exactly keep pixels, and no kept pixel has less noise than a pixel given to the partner.
     */
    @Test
    void fmixMasksKeepExactCountsEvenWithTiedNoise() {
        int pixels = 40;
        int rows = 9;
        Random r = new Random(3);
        float[] values = new float[rows * pixels];
        for (int i = 0; i < values.length; i++) {
            values[i] = Math.round(r.nextGaussian() * 2);
        }
        long[] keep = {0, 1, 7, 13, 20, 21, 33, 39, 40};
        for (DataType dtype : List.of(DataType.FLOAT32, DataType.FLOAT16, DataType.FLOAT64)) {
            double[] v = Fixtures.host(FMix.partnerMasks(manager, manager.create(values, new Shape(rows, pixels)),
                    keep, dtype));
            int tiedRows = 0;
            for (int i = 0; i < rows; i++) {
                long own = 0;
                double lowestKept = Double.POSITIVE_INFINITY;
                double highestGiven = Double.NEGATIVE_INFINITY;
                for (int p = 0; p < pixels; p++) {
                    double m = v[i * pixels + p];
                    assertTrue(m == 0 || m == 1, "binary");
                    float noise = values[i * pixels + p];
                    if (m == 0) {
                        own++;
                        lowestKept = Math.min(lowestKept, noise);
                    } else {
                        highestGiven = Math.max(highestGiven, noise);
                    }
                }
                assertEquals(keep[i], own, "row " + i);
                assertTrue(lowestKept >= highestGiven, "row " + i + " keeps the largest noise");
                if (lowestKept == highestGiven) {
                    tiedRows++;
                }
            }
            assertTrue(tiedRows > 0, "some rows had a tie at their threshold, so the exact ranking ran");
        }
    }

    @Test
    void spectrumScaleFollowsTheFmixFilter() {
        // fftfreq(4) = 0, .25, -.5, -.25 on rows; rfft columns of width 6: 0, 1/6, 2/6, 3/6 (wrapped to -.5)
        float[] s = FMix.spectrumScale(4, 6, 2.0);
        assertEquals(4 * 4, s.length);
        assertEquals(36.0, s[0], 1e-4, "DC uses the floor 1/max(H, W)");
        assertEquals(1 / (0.25 * 0.25 + 1.0 / 36), s[4 + 1], 1e-4);
        assertEquals(1 / (0.25 + 0.25), s[2 * 4 + 3], 1e-4);
    }
}
