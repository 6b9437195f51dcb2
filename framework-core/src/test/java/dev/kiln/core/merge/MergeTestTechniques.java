package dev.kiln.core.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.List;
import java.util.random.RandomGenerator;

/** Test-only merge methods, discovered by the worker on the core's test class path. */
public class MergeTestTechniques implements TechniqueProvider {

    /** Weighted average, optionally normalized: the simplest real merge, checked against a float64 reference. */
    static final class Linear implements MergeMethod {
        private final boolean normalize;

        Linear(boolean normalize) {
            this.normalize = normalize;
        }

        @Override
        public NDArray merge(MergeInput input) {
            NDArray sum = null;
            double total = 0;
            for (ModelTensor m : input.models()) {
                NDArray term = m.tensor().mul((float) m.weight());
                sum = sum == null ? term : sum.add(term);
                total += m.weight();
            }
            return normalize ? sum.div((float) total) : sum;
        }
    }

    /**
     * Base plus each task vector under a random keep mask drawn from the tensor's random source: its result depends
     * on that source, so it exposes any dependence on thread scheduling.
     */
    static final class RandomMask implements MergeMethod {
        @Override
        public NDArray merge(MergeInput input) {
            RandomGenerator random = input.random();
            NDArray out = input.base().duplicate();
            for (ModelTensor m : input.models()) {
                NDArray tau = m.tensor().sub(input.base());
                int n = (int) tau.size();
                boolean[] keep = new boolean[n];
                for (int i = 0; i < n; i++) {
                    keep[i] = random.nextDouble() < m.parameter("density", 0.5);
                }
                NDArray mask = tau.getManager().create(keep, new Shape(tau.getShape().getShape()));
                out = out.add(tau.mul(mask.toType(tau.getDataType(), false)));
            }
            return out;
        }

        @Override
        public boolean requiresBase() {
            return true;
        }
    }

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(
                SimpleTechnique.<MergeMethod>of(Kind.MERGE, "test-linear", "weighted average (test)",
                        List.of(ParameterSpec.flag("normalize", true, "divide by the summed weights")),
                        p -> new Linear(p.getBoolean("normalize"))),
                SimpleTechnique.<MergeMethod>of(Kind.MERGE, "test-random-mask", "random task-vector mask (test)",
                        List.of(), p -> new RandomMask()));
    }
}
