package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;

/**
 * Spherical interpolation between exactly two models, from model 0 ({@code t = 0}) to model 1 ({@code t = 1}).
 *
 * <p>As in mergekit: the angle comes from the two tensors flattened and scaled to unit norm (a tensor whose norm is
 * at most 1e-8 is left unscaled), the coefficients are applied to the original tensors, and when
 * {@code |cos| > 0.9995} the angle is too small for a stable division by its sine, so plain linear interpolation
 * is used. Weights and the base are not used.
 */
final class SlerpMerge implements MergeMethod {
    static final double COLINEAR = 0.9995;
    private static final double NORM_EPS = 1e-8;

    private final double t;

    SlerpMerge(double t) {
        this.t = t;
    }

    @Override
    public NDArray merge(MergeInput input) {
        if (input.models() != null && input.models().size() != 2) {
            throw new KilnException("merge method 'slerp' interpolates exactly two models, but tensor '"
                    + input.tensorName() + "' has " + input.models().size());
        }
        try (Scope scope = Scope.open("slerp", input, false)) {
            NDArray v0 = scope.tensor(0);
            NDArray v1 = scope.tensor(1);
            double n0 = v0.norm().getFloat();
            double n1 = v1.norm().getFloat();
            double dot = v0.mul(v1).sum().getFloat() / (n0 > NORM_EPS ? n0 : 1) / (n1 > NORM_EPS ? n1 : 1);
            double s0;
            double s1;
            if (Math.abs(dot) > COLINEAR) {
                s0 = 1 - t;
                s1 = t;
            } else {
                double omega = Math.acos(Math.max(-1, Math.min(1, dot)));
                double sin = Math.sin(omega);
                s0 = Math.sin((1 - t) * omega) / sin;
                s1 = Math.sin(t * omega) / sin;
            }
            return scope.finish(v0.mul((float) s0).add(v1.mul((float) s1)));
        }
    }
}
