package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Truncated SVD by a randomized range finder: W [out, in] (conv kernels flattened to [out, in*kh*kw]) is replaced by
 * U*S [out, r] and V^T [r, in].
 *
 * <p>The rank is either fixed ({@code rank > 0}) or, with {@code rank = 0}, the smallest r whose singular values
 * keep at least {@code energy} of the squared Frobenius norm. In energy mode the sketch starts narrow and doubles
 * until the chosen rank sits at least {@code oversampling} below the sketch width (or the sketch spans the whole
 * matrix), so the singular values it is chosen from are the accurate leading ones.
 *
 * <p>Stored: {@code ".u"} = U*S float32 [out, r] and {@code ".v"} = V^T float32 [r, in]; the reconstruction is their
 * product reshaped to the original shape. If W has rank below r, the extra columns/rows are zero.
 */
public final class LowRank implements Compressor {
    private final Settings settings;

    /** The parameters shared by {@code low-rank} and {@code low-rank-sparse}. */
    record Settings(int rank, double energy, int oversampling, int powerIterations, long seed) {
    }

    /** The chosen factors and the rank actually used. */
    record Approximation(NDArray us, NDArray vt, int rank, double keptEnergy) {
        NDArray product() {
            return us.matMul(vt);
        }
    }

    LowRank(Settings settings) {
        this.settings = settings;
    }

    /**
     * @param rank kept rank, or 0 to choose it by {@code energy}
     * @param energy fraction of the squared Frobenius norm to keep when {@code rank} is 0, in (0, 1]
     * @param oversampling extra sketch columns beyond the rank
     * @param powerIterations subspace iterations, each with re-orthonormalisation
     * @param seed seed of the Gaussian test matrix
     */
    public LowRank(int rank, double energy, int oversampling, int powerIterations, long seed) {
        this(new Settings(rank, energy, oversampling, powerIterations, seed));
    }

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("low-rank", name, weight, scope);
            Shape shape = w.getShape();
            NDArray matrix = Weights.asMatrix("low-rank", name, w);
            Approximation approx = approximate("low-rank", name, matrix, settings);
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put(".u", approx.us());
            stored.put(".v", approx.vt());
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "low-rank");
            metadata.put("rank", Integer.toString(approx.rank()));
            metadata.put("kept_energy", Double.toString(approx.keptEnergy()));
            metadata.put("original_shape", Weights.shapeText(shape));
            return Weights.result(owner, stored, approx.product().reshape(shape), metadata);
        }
    }

    /** The rank-r approximation of a float32 matrix [m, n] owned by a scope the caller closes. */
    static Approximation approximate(String technique, String name, NDArray matrix, Settings settings) {
        long m = matrix.getShape().get(0);
        long n = matrix.getShape().get(1);
        int minDim = (int) Math.min(m, n);
        if (settings.rank() > minDim) {
            throw new KilnException(technique + ": parameter 'rank' (" + settings.rank() + ") is larger than the "
                    + "smaller dimension of tensor '" + name + "' (matrix " + m + " x " + n + "); use at most "
                    + minDim);
        }
        double total = matrix.toType(DataType.FLOAT64, false).square().sum().getDouble();
        long seed = settings.seed() * 0x9E3779B97F4A7C15L + name.hashCode();
        if (total == 0) {
            int r = Math.max(settings.rank(), 1);
            return new Approximation(matrix.getManager().zeros(new Shape(m, r)),
                    matrix.getManager().zeros(new Shape(r, n)), r, 1.0);
        }
        if (settings.rank() > 0) {
            int width = Math.min(minDim, settings.rank() + settings.oversampling());
            RandomizedSvd.Factors f = RandomizedSvd.factor(name, matrix, width, settings.powerIterations(), seed);
            return truncate(f, settings.rank(), total, m, n);
        }
        int width = Math.min(minDim, Math.max(16, 4 * settings.oversampling()));
        while (true) {
            RandomizedSvd.Factors f = RandomizedSvd.factor(name, matrix, width, settings.powerIterations(), seed);
            double[] s = f.singularValues();
            double target = settings.energy() * total;
            double sum = 0;
            int r = 0;
            while (r < s.length && sum < target) {
                sum += s[r] * s[r];
                r++;
            }
            boolean reached = sum >= target;
            if (width == minDim || reached && r <= width - settings.oversampling()) {
                // At full width the sketch spans W and any shortfall is float rounding: keep every direction found.
                return truncate(f, Math.max(r, 1), total, m, n);
            }
            width = Math.min(minDim, 2 * width);
        }
    }

    private static Approximation truncate(RandomizedSvd.Factors f, int r, double total, long m, long n) {
        int available = f.singularValues().length;
        NDArray us;
        NDArray vt;
        if (available >= r) {
            us = f.us().get(new NDIndex(":, :{}", r));
            vt = f.vt().get(new NDIndex(":{}, :", r));
        } else {
            // W has rank below r: pad with zero directions so the stored shapes are the requested rank.
            NDManager manager = f.us().getManager();
            us = f.us().concat(manager.zeros(new Shape(m, r - available)), 1);
            vt = f.vt().concat(manager.zeros(new Shape(r - available, n)), 0);
        }
        double kept = 0;
        for (int i = 0; i < Math.min(r, available); i++) {
            kept += f.singularValues()[i] * f.singularValues()[i];
        }
        // Slices are views of the wider factors; copies let the stored arrays stand alone.
        return new Approximation(us.duplicate(), vt.duplicate(), r, Math.min(1.0, kept / total));
    }
}
