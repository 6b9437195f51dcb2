package dev.kiln.compress;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.CommonOps_DDRM;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.QRDecomposition;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;
import org.junit.jupiter.api.Test;

class LowRankTest {

    /** Exact singular values (descending) of a row-major matrix, in float64 with EJML. */
    static double[] exactSingularValues(float[] w, int rows, int cols) {
        DMatrixRMaj a = new DMatrixRMaj(rows, cols);
        for (int i = 0; i < w.length; i++) {
            a.data[i] = w[i];
        }
        SingularValueDecomposition_F64<DMatrixRMaj> svd = DecompositionFactory_DDRM.svd(rows, cols, false, false,
                true);
        assertTrue(svd.decompose(a));
        double[] s = Arrays.copyOf(svd.getSingularValues(), svd.numberOfSingularValues());
        Arrays.sort(s);
        for (int i = 0; i < s.length / 2; i++) {
            double t = s[i];
            s[i] = s[s.length - 1 - i];
            s[s.length - 1 - i] = t;
        }
        return s;
    }

    /** Eckart-Young: the best rank-r Frobenius error is the norm of the discarded singular values. */
    static double optimalError(double[] s, int r) {
        double tail = 0;
        for (int i = r; i < s.length; i++) {
            tail += s[i] * s[i];
        }
        return Math.sqrt(tail);
    }

    static double frobeniusDistance(float[] a, float[] b) {
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            double d = (double) a[i] - b[i];
            sum += d * d;
        }
        return Math.sqrt(sum);
    }

    static DMatrixRMaj randomOrthonormal(Random random, int rows, int cols) {
        DMatrixRMaj g = new DMatrixRMaj(rows, cols);
        for (int i = 0; i < g.data.length; i++) {
            g.data[i] = random.nextGaussian();
        }
        QRDecomposition<DMatrixRMaj> qr = DecompositionFactory_DDRM.qr(rows, cols);
        assertTrue(qr.decompose(g));
        return qr.getQ(null, true);
    }

    /** W = U diag(s) V^T with random orthonormal U, V and the given spectrum. */
    static float[] withSpectrum(Random random, int rows, int cols, double[] s) {
        int k = s.length;
        DMatrixRMaj u = randomOrthonormal(random, rows, k);
        DMatrixRMaj v = randomOrthonormal(random, cols, k);
        DMatrixRMaj us = u.copy();
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < k; j++) {
                us.set(i, j, u.get(i, j) * s[j]);
            }
        }
        DMatrixRMaj w = new DMatrixRMaj(rows, cols);
        CommonOps_DDRM.multTransB(us, v, w);
        float[] out = new float[rows * cols];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) w.data[i];
        }
        return out;
    }

    static double[] decaying(int k, double ratio) {
        double[] s = new double[k];
        for (int i = 0; i < k; i++) {
            s[i] = 3 * Math.pow(ratio, i);
        }
        return s;
    }

    private static void assertNearOptimal(float[] w, int rows, int cols, int rank) {
        CompressedTensor out = Support.compressor("low-rank", Map.of("rank", "" + rank))
                .compress("w", Support.array(w, rows, cols));
        assertEquals(new Shape(rows, rank), out.stored().get(".u").getShape());
        assertEquals(new Shape(rank, cols), out.stored().get(".v").getShape());
        float[] product = out.stored().get(".u").matMul(out.stored().get(".v")).toFloatArray();
        float[] recon = out.reconstruction().toFloatArray();
        assertEquals(0, frobeniusDistance(product, recon), 1e-5, "reconstruction is the product of the factors");
        double error = frobeniusDistance(w, recon);
        double optimal = optimalError(exactSingularValues(w, rows, cols), rank);
        assertTrue(error <= 1.01 * optimal + 1e-5, "rank " + rank + " error " + error + " vs optimal " + optimal);
        // Guards the test itself: no factorisation can beat Eckart-Young.
        assertTrue(error >= optimal * (1 - 1e-3) - 1e-5, "error " + error + " below optimal " + optimal);
    }

    @Test
    void randomizedSvdIsNearOptimalOnDecayingSpectra() {
        Random random = new Random(11);
        float[] w = withSpectrum(random, 60, 40, decaying(40, 0.8));
        for (int rank : new int[] {1, 4, 10, 25}) {
            assertNearOptimal(w, 60, 40, rank);
        }
        float[] wide = withSpectrum(random, 24, 70, decaying(24, 0.7));
        assertNearOptimal(wide, 24, 70, 6);
        // Steep decay: after power iterations the sketch spans 12 orders of magnitude, which a float32 Gram matrix
        // or a Gram-based basis without re-orthonormalisation would lose.
        float[] steep = withSpectrum(random, 80, 60, decaying(60, 0.4));
        assertNearOptimal(steep, 80, 60, 10);
    }

    @Test
    void randomizedSvdIsNearOptimalOnPlainRandomMatrices() {
        Random random = new Random(12);
        assertNearOptimal(Support.gaussian(random, 50 * 30, 1.0), 50, 30, 5);
        assertNearOptimal(Support.gaussian(random, 32 * 48, 0.02), 32, 48, 12);
        assertNearOptimal(Support.gaussian(random, 20 * 20, 1.0), 20, 20, 20);
    }

    @Test
    void energyModePicksTheSmallestRankReachingTheEnergy() {
        Random random = new Random(13);
        double[] spectrum = decaying(48, 0.85);
        float[] w = withSpectrum(random, 64, 48, spectrum);
        double[] exact = exactSingularValues(w, 64, 48);
        double total = 0;
        for (double s : exact) {
            total += s * s;
        }
        for (double energy : new double[] {0.5, 0.9, 0.99, 1.0}) {
            int expected = 0;
            double sum = 0;
            while (sum < energy * total * (1 - 1e-6) && expected < exact.length) {
                sum += exact[expected] * exact[expected];
                expected++;
            }
            CompressedTensor out = Support.compressor("low-rank", Map.of("energy", "" + energy))
                    .compress("w", Support.array(w, 64, 48));
            int rank = Integer.parseInt(out.metadata().get("rank"));
            if (energy < 1.0) {
                assertEquals(expected, rank, "rank for energy " + energy);
            } else {
                assertEquals(48, rank, "full energy keeps every direction");
            }
            assertEquals(new Shape(64, rank), out.stored().get(".u").getShape());
            double error = frobeniusDistance(w, out.reconstruction().toFloatArray());
            assertTrue(error * error <= (1 - energy) * total * 1.01 + 1e-6, "kept energy below " + energy);
        }
    }

    @Test
    void lowRankShrinksStorageAndHandlesConvAndLowRankInput() {
        Random random = new Random(14);
        float[] w = Support.gaussian(random, 16 * 8 * 3 * 3, 1.0);
        CompressedTensor out = Support.compressor("low-rank", Map.of("rank", "4"))
                .compress("conv.weight", Support.array(w, 16, 8, 3, 3));
        assertEquals(new Shape(16, 8, 3, 3), out.reconstruction().getShape());
        assertEquals(new Shape(4, 72), out.stored().get(".v").getShape());
        long dense = 16L * 72 * 4;
        assertTrue(out.storedBytes() < dense, out.storedBytes() + " >= " + dense);
        assertEquals(DataType.FLOAT32, out.stored().get(".u").getDataType());
        // A rank-2 matrix asked for rank 5: exact reconstruction, padded factors.
        float[] rankTwo = withSpectrum(random, 12, 10, new double[] {2, 1});
        CompressedTensor padded = Support.compressor("low-rank", Map.of("rank", "5"))
                .compress("r2", Support.array(rankTwo, 12, 10));
        assertEquals(new Shape(12, 5), padded.stored().get(".u").getShape());
        assertEquals(0, frobeniusDistance(rankTwo, padded.reconstruction().toFloatArray()), 1e-5);
        CompressedTensor zeros = Support.compressor("low-rank", Map.of("rank", "3"))
                .compress("z", Support.array(new float[6 * 5], 6, 5));
        assertEquals(0, frobeniusDistance(new float[30], zeros.reconstruction().toFloatArray()), 0);
    }

    @Test
    void lowRankIsDeterministicAndRejectsTooLargeRank() {
        Random random = new Random(15);
        float[] w = Support.gaussian(random, 20 * 30, 1.0);
        float[] a = Support.compressor("low-rank", Map.of("rank", "3")).compress("w", Support.array(w, 20, 30))
                .reconstruction().toFloatArray();
        float[] b = Support.compressor("low-rank", Map.of("rank", "3")).compress("w", Support.array(w, 20, 30))
                .reconstruction().toFloatArray();
        assertEquals(0, frobeniusDistance(a, b), 0);
        KilnException e = assertThrows(KilnException.class, () -> Support.compressor("low-rank",
                Map.of("rank", "21")).compress("attn.q.weight", Support.array(w, 20, 30)));
        assertTrue(e.getMessage().contains("'rank' (21)") && e.getMessage().contains("attn.q.weight"),
                e.getMessage());
        KilnException energy = assertThrows(KilnException.class,
                () -> Support.compressor("low-rank", Map.of("energy", "0")));
        assertTrue(energy.getMessage().contains("energy"), energy.getMessage());
    }

    @Test
    void lowRankSparseKeepsTheLargestResidualEntries() {
        Random random = new Random(16);
        int rows = 24;
        int cols = 20;
        float[] w = Support.gaussian(random, rows * cols, 1.0);
        CompressedTensor out = Support.compressor("low-rank-sparse",
                Map.of("rank", "3", "residual-density", "0.1")).compress("expert.w1", Support.array(w, rows, cols));
        int nnz = (int) Math.round(0.1 * rows * cols);
        float[] values = out.stored().get(".residual").toFloatArray();
        int[] index = out.stored().get(".residual_index").toIntArray();
        assertEquals(nnz, values.length);
        assertEquals(nnz, index.length);
        float[] low = out.stored().get(".u").matMul(out.stored().get(".v")).toFloatArray();
        double[] residual = new double[w.length];
        for (int i = 0; i < w.length; i++) {
            residual[i] = Math.abs((double) w[i] - low[i]);
        }
        boolean[] kept = new boolean[w.length];
        for (int j = 0; j < nnz; j++) {
            kept[index[j]] = true;
            assertEquals(w[index[j]] - low[index[j]], values[j], 1e-5, "residual value at " + index[j]);
            assertTrue(j == 0 || index[j] > index[j - 1], "indices ascending");
        }
        double smallestKept = Double.POSITIVE_INFINITY;
        double largestDropped = 0;
        for (int i = 0; i < w.length; i++) {
            if (kept[i]) {
                smallestKept = Math.min(smallestKept, residual[i]);
            } else {
                largestDropped = Math.max(largestDropped, residual[i]);
            }
        }
        assertTrue(smallestKept >= largestDropped - 1e-5, smallestKept + " < " + largestDropped);
        float[] recon = out.reconstruction().toFloatArray();
        double lowOnly = frobeniusDistance(w, low);
        double both = frobeniusDistance(w, recon);
        assertTrue(both < lowOnly, "the residual must reduce the error");
        for (int i = 0; i < w.length; i++) {
            assertEquals(kept[i] ? w[i] : low[i], recon[i], 1e-5, "reconstruction at " + i);
        }
        assertTrue(out.storedBytes() < 4L * rows * cols);
    }
}
