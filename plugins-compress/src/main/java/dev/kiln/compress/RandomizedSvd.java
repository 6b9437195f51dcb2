package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import java.util.Arrays;
import java.util.Random;
import org.ejml.data.DMatrixRMaj;
import org.ejml.dense.row.factory.DecompositionFactory_DDRM;
import org.ejml.interfaces.decomposition.EigenDecomposition_F64;
import org.ejml.interfaces.decomposition.SingularValueDecomposition_F64;

/**
 * Truncated SVD of a matrix by a randomized range finder (Halko, Martinsson and Tropp 2011, algorithms 4.4 and 5.1).
 *
 * <p>All products with the big matrix are NDArray matmuls on its device. The host only sees l x l Gram matrices and
 * the l x n projection B, where l = rank + oversampling: DJL has no SVD, QR or eig, so those small factorisations
 * run in EJML.
 */
final class RandomizedSvd {
    /**
     * Gram eigenvalues below this fraction of the largest are directions the sketch does not contain (a matrix of
     * lower rank than l); they are dropped instead of being blown up into noise columns.
     */
    private static final double GRAM_CUTOFF = 1e-12;

    /** A truncated factorisation: {@code us} = U*S [m, k], {@code vt} = V^T [k, n], singular values descending. */
    record Factors(NDArray us, NDArray vt, double[] singularValues) {
    }

    private RandomizedSvd() {
    }

    /**
     * The leading singular triplets of {@code w} [m, n] from a sketch of width {@code width} (at most min(m, n)).
     * Returns every singular value of the projected matrix (up to {@code width}, fewer when w has lower rank); the
     * caller truncates.
     */
    static Factors factor(String name, NDArray w, int width, int powerIterations, long seed) {
        NDManager manager = w.getManager();
        long m = w.getShape().get(0);
        long n = w.getShape().get(1);
        NDArray q;
        if (width >= Math.min(m, n)) {
            // A sketch as wide as the matrix spans its whole range: use the range itself, no random test matrix and
            // no power iterations. A wide or square W needs no basis at all (Q = I gives B = W).
            q = m <= n ? manager.eye((int) m) : orthonormalize(name, w);
        } else {
            q = orthonormalize(name, w.matMul(gaussian(manager, n, width, seed)));
            NDArray wt = w.transpose();
            for (int i = 0; i < powerIterations; i++) {
                // Orthonormalising between every product keeps the sketch from collapsing onto the top singular
                // vector: (W W^T)^q W Omega without it has condition number (sigma_1/sigma_l)^(2q+1).
                NDArray z = orthonormalize(name, wt.matMul(q));
                q = orthonormalize(name, w.matMul(z));
            }
        }
        NDArray b = q.transpose().matMul(w);
        int rows = (int) b.getShape().get(0);
        SingularValueDecomposition_F64<DMatrixRMaj> svd = DecompositionFactory_DDRM.svd(rows, (int) n, true, true,
                true);
        DMatrixRMaj host = new DMatrixRMaj(rows, (int) n, true, b.toType(DataType.FLOAT64, false).toDoubleArray());
        if (!svd.decompose(host)) {
            throw new KilnException("low-rank: the SVD of the projected " + rows + " x " + n + " matrix of tensor '"
                    + name + "' did not converge");
        }
        double[] s = svd.getSingularValues();
        int k = svd.numberOfSingularValues();
        Integer[] order = descending(s, k);
        DMatrixRMaj ub = svd.getU(null, false);
        DMatrixRMaj vb = svd.getV(null, true);
        double[] usSmall = new double[rows * k];
        double[] vt = new double[(int) (k * n)];
        double[] sorted = new double[k];
        for (int j = 0; j < k; j++) {
            int src = order[j];
            sorted[j] = s[src];
            for (int i = 0; i < rows; i++) {
                usSmall[i * k + j] = ub.get(i, src) * s[src];
            }
            for (int c = 0; c < n; c++) {
                vt[(int) (j * n + c)] = vb.get(src, c);
            }
        }
        NDArray us = q.matMul(manager.create(toFloat(usSmall), new Shape(rows, k)));
        NDArray vtArray = manager.create(toFloat(vt), new Shape(k, n));
        return new Factors(us, vtArray, sorted);
    }

    /**
     * An orthonormal basis of the columns of {@code y} [m, l] via its l x l Gram matrix: with the symmetric
     * eigen-decomposition Y^T Y = U diag(s) U^T, Q = Y U diag(s)^(-1/2). The Gram matrix is formed in float64 on
     * the device, so directions down to about 1e-6 of the largest singular value survive (eigenvalues down to 1e-12),
     * and the whole step is done twice (as in CholeskyQR2) because one pass leaves an orthogonality error that grows
     * with the condition number.
     */
    static NDArray orthonormalize(String name, NDArray y) {
        NDManager manager = y.getManager();
        NDArray basis = y.toType(DataType.FLOAT64, false);
        for (int pass = 0; pass < 2; pass++) {
            int l = (int) basis.getShape().get(1);
            double[] gram = basis.transpose().matMul(basis).toDoubleArray();
            EigenDecomposition_F64<DMatrixRMaj> eig = DecompositionFactory_DDRM.eig(l, true, true);
            if (!eig.decompose(new DMatrixRMaj(l, l, true, gram))) {
                throw new KilnException("low-rank: the eigen-decomposition of a " + l + " x " + l
                        + " Gram matrix of tensor '" + name + "' did not converge");
            }
            double[] s = new double[l];
            for (int i = 0; i < l; i++) {
                s[i] = eig.getEigenvalue(i).getReal();
            }
            Integer[] order = descending(s, l);
            double largest = s[order[0]];
            int kept = 0;
            while (kept < l && s[order[kept]] > largest * GRAM_CUTOFF) {
                kept++;
            }
            if (kept == 0) {
                throw new KilnException("low-rank: tensor '" + name + "' has no non-zero direction to keep");
            }
            double[] transform = new double[l * kept];
            for (int j = 0; j < kept; j++) {
                DMatrixRMaj vector = eig.getEigenVector(order[j]);
                double inv = 1 / Math.sqrt(s[order[j]]);
                for (int i = 0; i < l; i++) {
                    transform[i * kept + j] = vector.get(i) * inv;
                }
            }
            basis = basis.matMul(manager.create(transform, new Shape(l, kept)));
        }
        return basis.toType(DataType.FLOAT32, false);
    }

    /**
     * The Gaussian test matrix, drawn on the host from a seeded {@link Random}: the same checkpoint then compresses
     * to the same bytes on any device and whatever the engine's global random state is. It has n x l entries, a
     * small fraction of the weight's m x n.
     */
    private static NDArray gaussian(NDManager manager, long rows, int cols, long seed) {
        Random random = new Random(seed);
        float[] values = new float[(int) (rows * cols)];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextGaussian();
        }
        return manager.create(values, new Shape(rows, cols));
    }

    private static Integer[] descending(double[] values, int count) {
        Integer[] order = new Integer[count];
        for (int i = 0; i < count; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> Double.compare(values[b], values[a]));
        return order;
    }

    private static float[] toFloat(double[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (float) values[i];
        }
        return out;
    }
}
