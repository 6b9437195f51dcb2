package dev.kiln.core.worker;

import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.merge.MergeMethod;
import java.util.List;

/** A technique jar stand-in on the core's test class path, discovered by the worker's registry. */
public class TestTechniques implements TechniqueProvider {
    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(SimpleTechnique.<MergeMethod>of(Kind.MERGE, "test-ties", "a test merge method",
                List.of(ParameterSpec.decimal("density", 0.2, "kept fraction").between(0, 1)),
                p -> input -> input.models().get(0).tensor()));
    }
}
