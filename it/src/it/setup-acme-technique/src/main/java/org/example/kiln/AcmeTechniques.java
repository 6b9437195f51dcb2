package org.example.kiln;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.MixedBatch;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.List;

/**
 * A third party's technique jar: one augmentation and one merge method, built against kiln-spi only.
 * <ul>
 *   <li>{@code acme-cutout}: Cutout (DeVries and Taylor, 2017), zeroes one random square of every image; labels stay.</li>
 *   <li>{@code acme-median}: the element-wise median of the models, a merge that ignores one outlying model.</li>
 * </ul>
 */
public class AcmeTechniques implements TechniqueProvider {
    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(cutout(), median());
    }

    private static Technique<Augmentation> cutout() {
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "acme-cutout",
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
                }).withReference("DeVries and Taylor, Improved Regularization of CNNs with Cutout, 2017");
    }

    private static Technique<MergeMethod> median() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "acme-median",
                "Element-wise median of the models' weights", List.of(),
                params -> input -> {
                    NDManager caller = input.models().get(0).tensor().getManager();
                    try (NDManager scope = caller.newSubManager()) {
                        NDList tensors = new NDList();
                        for (ModelTensor model : input.models()) {
                            tensors.add(model.tensor());
                        }
                        NDArray stacked = NDArrays.stack(tensors);
                        stacked.attach(scope);
                        NDArray median = stacked.median(new int[] {0});
                        median.attach(caller);
                        return median;
                    }
                });
    }
}
