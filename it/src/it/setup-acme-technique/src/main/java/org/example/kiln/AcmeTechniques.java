package org.example.kiln;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.MixedBatch;
import java.util.List;

/** Cutout (DeVries and Taylor, 2017): zero one random square per batch; labels stay as they are. */
public class AcmeTechniques implements TechniqueProvider {
    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "acme-cutout",
                "Zeroes one random square of every image in the batch",
                List.of(ParameterSpec.integer("size", 8L, "side of the square in pixels").atLeast(1)),
                params -> (batch, context) -> {
                    NDArray inputs = batch.inputs().duplicate();
                    long h = inputs.getShape().get(2);
                    long w = inputs.getShape().get(3);
                    long size = Math.min(params.getLong("size"), Math.min(h, w));
                    long top = context.random().nextLong(h - size + 1);
                    long left = context.random().nextLong(w - size + 1);
                    inputs.set(new NDIndex(":, :, {}:{}, {}:{}", top, top + size, left, left + size), 0f);
                    return new MixedBatch(inputs, batch.softTargets());
                }));
    }
}
