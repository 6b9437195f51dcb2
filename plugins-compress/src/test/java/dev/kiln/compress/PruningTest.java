package dev.kiln.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class PruningTest {

    private static void assertMagnitudeMatchesReference(float[] w, long[] shape, double sparsity) {
        Compressor magnitude = Support.compressor("magnitude", Map.of("sparsity", Double.toString(sparsity)));
        NDArray weight = Support.array(w.clone(), shape);
        CompressedTensor out = magnitude.compress("layer.weight", weight);
        int k = (int) Math.round((1 - sparsity) * w.length);
        boolean[] keep = Support.referenceKeep(Support.abs(w), 0, w.length, k);
        float[] pruned = out.stored().get("").toFloatArray();
        int nonZero = 0;
        for (int i = 0; i < w.length; i++) {
            assertEquals(keep[i] ? w[i] : 0f, pruned[i], 0f, "entry " + i);
            nonZero += pruned[i] != 0 ? 1 : 0;
        }
        assertEquals(k, nonZero, "kept count");
        assertEquals(Integer.toString(k), out.metadata().get("kept"));
        assertArrayEquals(w, weight.toFloatArray(), 0f, "input must not be modified");
        assertEquals(new Shape(shape), out.reconstruction().getShape());
    }

    @Test
    void magnitudeKeepsExactlyTheLargestOnRandomInput() {
        Random random = new Random(1);
        for (double sparsity : new double[] {0.0, 0.3, 0.5, 0.9, 1.0}) {
            assertMagnitudeMatchesReference(Support.gaussian(random, 13 * 17, 1.0), new long[] {13, 17}, sparsity);
        }
        assertMagnitudeMatchesReference(Support.gaussian(random, 4 * 3 * 3 * 3, 1.0), new long[] {4, 3, 3, 3}, 0.6);
    }

    @Test
    void magnitudeBreaksTiesByIndexAndIsDeterministic() {
        Random random = new Random(2);
        float[] levels = {0.5f, -0.5f, 1f, -1f, 2f};
        float[] w = new float[20 * 10];
        for (int i = 0; i < w.length; i++) {
            w[i] = levels[random.nextInt(levels.length)];
        }
        // Thresholds fall inside runs of equal magnitude for all of these.
        for (double sparsity : new double[] {0.25, 0.5, 0.77}) {
            assertMagnitudeMatchesReference(w, new long[] {20, 10}, sparsity);
        }
        Compressor magnitude = Support.compressor("magnitude", Map.of("sparsity", "0.5"));
        float[] first = magnitude.compress("t", Support.array(w, 20, 10)).reconstruction().toFloatArray();
        float[] second = magnitude.compress("t", Support.array(w, 20, 10)).reconstruction().toFloatArray();
        assertArrayEquals(first, second, 0f);
    }

    @Test
    void nmKeepsTheLargestInEveryGroup() {
        Random random = new Random(3);
        int[][] patterns = {{2, 4}, {1, 4}, {3, 8}, {4, 4}};
        long[][] shapes = {{6, 16}, {4, 2, 2, 4}};
        for (int[] nm : patterns) {
            for (long[] shape : shapes) {
                int n = nm[0];
                int m = nm[1];
                int numel = (int) new Shape(shape).size();
                float[] w = Support.gaussian(random, numel, 1.0);
                // A few exact ties inside groups exercise the index tie-break.
                w[1] = -w[0];
                w[m + 2] = w[m + 3];
                Compressor compressor = Support.compressor("nm", Map.of("n", "" + n, "m", "" + m));
                CompressedTensor out = compressor.compress("conv.weight", Support.array(w, shape));
                float[] pruned = out.stored().get("").toFloatArray();
                double[] magnitude = Support.abs(w);
                for (int g = 0; g < numel / m; g++) {
                    boolean[] keep = Support.referenceKeep(magnitude, g * m, m, n);
                    int nonZero = 0;
                    double smallestKept = Double.POSITIVE_INFINITY;
                    double largestDropped = 0;
                    for (int j = 0; j < m; j++) {
                        int i = g * m + j;
                        assertEquals(keep[j] ? w[i] : 0f, pruned[i], 0f, "group " + g + " entry " + j);
                        nonZero += pruned[i] != 0 ? 1 : 0;
                        if (pruned[i] != 0) {
                            smallestKept = Math.min(smallestKept, magnitude[i]);
                        } else {
                            largestDropped = Math.max(largestDropped, magnitude[i]);
                        }
                    }
                    assertTrue(nonZero <= n, "group " + g + " has " + nonZero + " non-zeros");
                    assertTrue(smallestKept >= largestDropped, "group " + g + " kept a smaller weight");
                }
                assertEquals(n + ":" + m, out.metadata().get("n") + ":" + out.metadata().get("m"));
            }
        }
    }

    @Test
    void nmRejectsIndivisibleInputAndNAboveM() {
        Compressor compressor = Support.compressor("nm", Map.of());
        KilnException e = assertThrows(KilnException.class,
                () -> compressor.compress("fc1.weight", Support.array(new float[4 * 6], 4, 6)));
        assertTrue(e.getMessage().contains("fc1.weight") && e.getMessage().contains("(4, 6)")
                && e.getMessage().contains("m=4"), e.getMessage());
        KilnException bad = assertThrows(KilnException.class,
                () -> Support.compressor("nm", Map.of("n", "5", "m", "4")));
        assertTrue(bad.getMessage().contains("'n' (5)") && bad.getMessage().contains("'m' (4)"), bad.getMessage());
    }

    @Test
    void structuredRemovesTheRowsWithSmallestNorm() {
        Random random = new Random(4);
        int rows = 10;
        int cols = 6;
        float[] w = Support.gaussian(random, rows * cols, 1.0);
        // Rows 7 and 2 are permutations of row 4: equal norms, so the lower index must win among them.
        for (int j = 0; j < cols; j++) {
            w[7 * cols + j] = w[4 * cols + (cols - 1 - j)];
            w[2 * cols + j] = -w[4 * cols + j];
        }
        double[] norms = new double[rows];
        for (int r = 0; r < rows; r++) {
            double sum = 0;
            for (int j = 0; j < cols; j++) {
                sum += (double) w[r * cols + j] * w[r * cols + j];
            }
            norms[r] = Math.sqrt(sum);
        }
        for (double sparsity : new double[] {0.0, 0.3, 0.5, 0.9}) {
            int k = (int) Math.round((1 - sparsity) * rows);
            CompressedTensor out = Support.compressor("structured", Map.of("sparsity", "" + sparsity))
                    .compress("fc.weight", Support.array(w, rows, cols));
            boolean[] keep = Support.referenceKeep(norms, 0, rows, k);
            long[] index = out.stored().get(".row_index").toLongArray();
            assertEquals(DataType.INT64, out.stored().get(".row_index").getDataType());
            assertEquals(k, index.length, "kept rows at sparsity " + sparsity);
            assertEquals(new Shape(k, cols), out.stored().get(".rows").getShape());
            float[] kept = out.stored().get(".rows").toFloatArray();
            float[] recon = out.reconstruction().toFloatArray();
            int next = 0;
            for (int r = 0; r < rows; r++) {
                if (keep[r]) {
                    assertEquals(r, index[next], "kept row order");
                    for (int j = 0; j < cols; j++) {
                        assertEquals(w[r * cols + j], kept[next * cols + j], 0f);
                    }
                    next++;
                }
                for (int j = 0; j < cols; j++) {
                    assertEquals(keep[r] ? w[r * cols + j] : 0f, recon[r * cols + j], 0f, "row " + r);
                }
            }
        }
    }

    @Test
    void structuredHandlesConvKernelsAndRefusesRemovingEverything() {
        Random random = new Random(5);
        float[] w = Support.gaussian(random, 8 * 3 * 3 * 3, 1.0);
        CompressedTensor out = Support.compressor("structured", Map.of("sparsity", "0.25"))
                .compress("conv.weight", Support.array(w, 8, 3, 3, 3));
        assertEquals(new Shape(6, 3, 3, 3), out.stored().get(".rows").getShape());
        assertEquals(new Shape(8, 3, 3, 3), out.reconstruction().getShape());
        KilnException e = assertThrows(KilnException.class, () -> Support.compressor("structured",
                Map.of("sparsity", "0.9")).compress("tiny.weight", Support.array(new float[] {1, 2, 3, 4}, 2, 2)));
        assertTrue(e.getMessage().contains("tiny.weight"), e.getMessage());
    }

    @Test
    void badSparsityAndBadTensorsFailClearly() {
        KilnException e = assertThrows(KilnException.class,
                () -> Support.compressor("magnitude", Map.of("sparsity", "1.5")));
        assertTrue(e.getMessage().contains("sparsity") && e.getMessage().contains("1.5"), e.getMessage());
        Compressor magnitude = Support.compressor("magnitude", Map.of());
        KilnException nan = assertThrows(KilnException.class,
                () -> magnitude.compress("bad.weight", Support.array(new float[] {1, Float.NaN, 2, 3}, 2, 2)));
        assertTrue(nan.getMessage().contains("bad.weight") && nan.getMessage().contains("NaN"), nan.getMessage());
        KilnException ints = assertThrows(KilnException.class, () -> magnitude.compress("ids",
                Support.MANAGER.create(new int[] {1, 2, 3, 4}, new Shape(2, 2))));
        assertTrue(ints.getMessage().contains("ids") && ints.getMessage().contains("int32"), ints.getMessage());
        KilnException vector = assertThrows(KilnException.class, () -> Support.compressor("nm", Map.of())
                .compress("fc.bias", Support.array(new float[] {1, 2, 3, 4}, 4)));
        assertTrue(vector.getMessage().contains("fc.bias"), vector.getMessage());
    }
}
