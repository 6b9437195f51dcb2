package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ResizeMixTest {
    private static final int C = 2;
    private static final int H = 9;
    private static final int W = 14;
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
     * float64 antialiased bilinear resize of one (h, w) plane, written from the definition: separable triangle
     * filter with half-pixel centres, widened by the scale when shrinking (PIL's and torch's antialias=True), which is
     * what the engine's image resize does; for enlarging it reduces to plain bilinear with align_corners = false.
     */
    static double[][] bilinear(double[][] src, int outH, int outW) {
        int inH = src.length;
        int inW = src[0].length;
        double[][] wy = weights(inH, outH);
        double[][] wx = weights(inW, outW);
        double[][] rowsDone = new double[inH][outW];
        for (int y = 0; y < inH; y++) {
            for (int x = 0; x < outW; x++) {
                for (int j = 0; j < inW; j++) {
                    rowsDone[y][x] += wx[x][j] * src[y][j];
                }
            }
        }
        double[][] out = new double[outH][outW];
        for (int y = 0; y < outH; y++) {
            for (int x = 0; x < outW; x++) {
                for (int j = 0; j < inH; j++) {
                    out[y][x] += wy[y][j] * rowsDone[j][x];
                }
            }
        }
        return out;
    }

    /** Dense (out x in) interpolation weights along one axis. */
    private static double[][] weights(int in, int out) {
        double scale = (double) in / out;
        double support = scale >= 1 ? scale : 1.0;
        double inv = scale >= 1 ? 1 / scale : 1.0;
        double[][] w = new double[out][in];
        for (int i = 0; i < out; i++) {
            double center = scale * (i + 0.5);
            int lo = Math.max((int) (center - support + 0.5), 0);
            int hi = Math.min((int) (center + support + 0.5), in);
            double total = 0;
            for (int j = lo; j < hi; j++) {
                w[i][j] = Math.max(0, 1 - Math.abs((j - center + 0.5) * inv));
                total += w[i][j];
            }
            for (int j = lo; j < hi; j++) {
                w[i][j] /= total;
            }
        }
        return w;
    }

    @Test
    void shrinkingByAnIntegerFactorAveragesWithATriangle() {
        // Hand-computed: 8 -> 2 samples, centre 2 with support 4 covers pixels 0..5 with weights
        // 5,7,7,5,3,1 (/28): 0*5+1*7+2*7+3*5+4*3+5*1 = 53, 53/28 = 1.892857...
        NDArray x = manager.create(new float[] {0, 1, 2, 3, 4, 5, 6, 7}, new Shape(1, 1, 1, 8));
        float[] got = ResizeMix.resize(x, 1, 2).toFloatArray();
        assertEquals(53.0 / 28, got[0], 1e-5);
        assertEquals(7 - 53.0 / 28, got[1], 1e-5);
    }

    private static double[][] plane(double[] flat, int sample, int channel) {
        double[][] p = new double[H][W];
        for (int y = 0; y < H; y++) {
            for (int x = 0; x < W; x++) {
                p[y][x] = flat[((sample * C + channel) * H + y) * W + x];
            }
        }
        return p;
    }

    @Test
    void resizeMatchesFloat64BilinearReference() {
        Random r = new Random(4);
        NDArray x = Fixtures.images(manager, r, 2, C, H, W);
        double[] flat = Fixtures.host(x);
        int[][] sizes = {{4, 6}, {9, 14}, {3, 11}, {13, 20}, {1, 1}};
        for (int[] size : sizes) {
            double[] got = Fixtures.host(ResizeMix.resize(x, size[0], size[1]));
            for (int s = 0; s < 2; s++) {
                for (int c = 0; c < C; c++) {
                    double[][] ref = bilinear(plane(flat, s, c), size[0], size[1]);
                    for (int y = 0; y < size[0]; y++) {
                        for (int xx = 0; xx < size[1]; xx++) {
                            double g = got[((s * C + c) * size[0] + y) * size[1] + xx];
                            assertEquals(ref[y][xx], g, 1e-5, "size " + size[0] + "x" + size[1]);
                        }
                    }
                }
            }
        }
    }

    /** PyTorch's nearest rule, written out: output index i reads floor(i * (in / out)) in float32, at most in - 1. */
    private static double[][] nearestReference(double[][] plane, int h, int w) {
        double[][] out = new double[h][w];
        float rowRatio = (float) plane.length / h;
        float colRatio = (float) plane[0].length / w;
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int sy = Math.min((int) Math.floor(y * rowRatio), plane.length - 1);
                int sx = Math.min((int) Math.floor(x * colRatio), plane[0].length - 1);
                out[y][x] = plane[sy][sx];
            }
        }
        return out;
    }

    /**
     * The nearest patch against the rule written out, for every output size up to the input's on each axis (and a
     * few enlargements), one and three samples, in float32 and float64: the flattened-pixel gather must pick exactly
     * the same source pixel as PyTorch.
     */
    @Test
    void nearestMatchesPyTorchsRuleForEverySize() {
        for (int n : new int[] {1, 3}) {
            for (DataType dtype : new DataType[] {DataType.FLOAT32, DataType.FLOAT64}) {
                try (NDManager sub = manager.newSubManager()) {
                    NDArray x = Fixtures.images(sub, new Random(n), n, C, H, W).toType(dtype, false);
                    double[] flat = Fixtures.host(x);
                    for (int h = 1; h <= H + 2; h++) {
                        for (int w = 1; w <= W + 3; w += 2) {
                            NDArray got = ResizeMix.nearest(sub, x, h, w);
                            assertEquals(new Shape(n, C, h, w), got.getShape());
                            assertEquals(dtype, got.getDataType());
                            double[] g = Fixtures.host(got);
                            for (int s = 0; s < n; s++) {
                                for (int c = 0; c < C; c++) {
                                    double[][] ref = nearestReference(plane(flat, s, c), h, w);
                                    for (int y = 0; y < h; y++) {
                                        for (int xx = 0; xx < w; xx++) {
                                            assertEquals(ref[y][xx], g[((s * C + c) * h + y) * w + xx], 0.0,
                                                    h + "x" + w + " sample " + s + " channel " + c);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"nearest", "bilinear"})
    void pasteIsThePartnerResizedAndLambdaIsThePatchArea(String interpolation) {
        Augmentation aug = Fixtures.create("resizemix", Map.of("interpolation", interpolation));
        int clipped = 0;
        for (long seed = 0; seed < 25; seed++) {
            try (NDManager sub = manager.newSubManager()) {
                int n = 4;
                NDArray x = Fixtures.images(sub, new Random(seed), n, C, H, W);
                double[] before = Fixtures.host(x);
                MixedBatch out = Fixtures.mix(aug, x, sub.create(new long[] {0, 1, 2, 3}), n, seed);
                double[] after = Fixtures.host(out.inputs());
                double[][] t = Fixtures.rows(out.targets());
                for (int i = 0; i < n; i++) {
                    int partner = Fixtures.partner(i, n);
                    int y0 = H;
                    int y1 = -1;
                    int x0 = W;
                    int x1 = -1;
                    int count = 0;
                    for (int y = 0; y < H; y++) {
                        for (int xx = 0; xx < W; xx++) {
                            int p = ((i * C) * H + y) * W + xx;
                            if (before[p] != after[p]) {
                                count++;
                                y0 = Math.min(y0, y);
                                y1 = Math.max(y1, y + 1);
                                x0 = Math.min(x0, xx);
                                x1 = Math.max(x1, xx + 1);
                            }
                        }
                    }
                    double lam = t[i][i];
                    assertEquals(1 - lam, t[i][partner], 1e-6);
                    if (count == 0) {
                        assertEquals(1.0, lam, 1e-6, "nothing pasted, nothing mixed in the target");
                        continue;
                    }
                    int h = y1 - y0;
                    int w = x1 - x0;
                    assertEquals(h * w, count, "paste is a filled rectangle");
                    assertEquals(1 - (double) h * w / (H * W), lam, 1e-6, "lambda = 1 - patch area");
                    // side ratio within [0.1, 0.8] of each side (before clipping, so clipped ones only above)
                    assertTrue(h <= 0.8 * H + 1 && w <= 0.8 * W + 1, "box " + h + "x" + w);
                    if (y0 == 0 || y1 == H || x0 == 0 || x1 == W) {
                        clipped++;
                    }
                    for (int c = 0; c < C; c++) {
                        double[][] ref = interpolation.equals("nearest")
                                ? nearestReference(plane(before, partner, c), h, w)
                                : bilinear(plane(before, partner, c), h, w);
                        for (int y = 0; y < h; y++) {
                            for (int xx = 0; xx < w; xx++) {
                                double g = after[((i * C + c) * H + y0 + y) * W + x0 + xx];
                                assertEquals(ref[y][xx], g, 1e-5, "seed " + seed + " sample " + i);
                            }
                        }
                    }
                    // outside the patch the sample is untouched (count above already implies it)
                }
            }
        }
        assertTrue(clipped > 0, "some boxes were clipped at the border");
    }

    @Test
    void keepsHalfPrecision() {
        NDArray x = Fixtures.images(manager, new Random(1), 3, C, H, W).toType(DataType.FLOAT16, false);
        MixedBatch out = Fixtures.mix(Fixtures.create("resizemix", Map.of()), x,
                manager.create(new long[] {0, 1, 2}), 3, 7);
        assertEquals(DataType.FLOAT16, out.inputs().getDataType());
        assertEquals(new Shape(3, C, H, W), out.inputs().getShape());
    }
}
