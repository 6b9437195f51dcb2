package dev.kiln.core.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Registry;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Test doubles of the {@code int8} and {@code magnitude} compressors with the same stored formats as the real ones
 * in plugins-compress (which core must not depend on, not even in tests). Reached only through a {@link Registry}.
 */
final class CompressTestTechniques implements TechniqueProvider {

    static Registry registry() {
        return Registry.of(List.of(new CompressTestTechniques()));
    }

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(
                SimpleTechnique.of(Kind.COMPRESS, "int8", "test int8", List.of(), p -> new Int8()),
                // stands in for plugins-compress's structured under its id, to see which tensors the goal offers it
                SimpleTechnique.of(Kind.COMPRESS, "structured", "test stand-in (int8 format)", List.of(),
                        p -> new Int8()),
                SimpleTechnique.of(Kind.COMPRESS, "magnitude", "test magnitude",
                        List.of(ParameterSpec.decimal("sparsity", 0.5, "zeroed fraction").between(0, 1)),
                        p -> new Magnitude(p.getDouble("sparsity"))));
    }

    /** Per-output-channel symmetric int8: {@code .q} int8 and {@code .scale} float32 [out]. */
    static final class Int8 implements Compressor {
        @Override
        public CompressedTensor compress(String name, NDArray weight) {
            Shape shape = weight.getShape();
            NDArray m = weight.reshape(shape.get(0), -1);
            NDArray scale = m.abs().max(new int[] {1}, true).div(127f);
            NDArray safe = scale.add(scale.eq(0f).toType(DataType.FLOAT32, false));
            NDArray q = m.div(safe).round().clip(-127, 127);
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put(".q", q.toType(DataType.INT8, false).reshape(shape));
            stored.put(".scale", scale.reshape(shape.get(0)));
            return new CompressedTensor(stored, q.mul(scale).reshape(shape),
                    Map.of("format", "int8-symmetric-per-channel"));
        }
    }

    /** Keeps the round((1 - sparsity) * numel) largest |w| (random weights have no ties). */
    static final class Magnitude implements Compressor {
        private final double sparsity;

        Magnitude(double sparsity) {
            this.sparsity = sparsity;
        }

        @Override
        public CompressedTensor compress(String name, NDArray weight) {
            long keep = Math.round((1 - sparsity) * weight.size());
            NDArray flat = weight.abs().reshape(weight.size());
            NDArray mask;
            if (keep == 0) {
                mask = flat.lt(-1f);
            } else {
                NDArray kth = flat.topK((int) keep, 0, true, true).get(0).min();
                mask = flat.gte(kth);
            }
            NDArray pruned = weight.mul(mask.reshape(weight.getShape()).toType(DataType.FLOAT32, false));
            return new CompressedTensor(Map.of("", pruned), pruned, Map.of("format", "magnitude", "sparsity",
                    Double.toString(sparsity)));
        }
    }
}
