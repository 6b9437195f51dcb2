package dev.kiln.merge;

import dev.kiln.spi.Technique;
import dev.kiln.testkit.TechniqueContract;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** Every merge method this jar lists keeps the technique contract of kiln-testkit. */
class MergeContractTest {

    @Test
    void providerKeepsTheContract() {
        TechniqueContract.checkProvider(new MergeTechniques());
    }

    @TestFactory
    Stream<DynamicTest> everyTechniqueKeepsTheContract() {
        return new MergeTechniques().techniques().stream()
                .map(t -> DynamicTest.dynamicTest(t.id(), () -> contract(t).check()));
    }

    private static TechniqueContract contract(Technique<?> technique) {
        TechniqueContract contract = TechniqueContract.forTechnique(technique);
        switch (technique.id()) {
            case "task-arithmetic":
            case "dare":
                // With mergekit's normalize=false these sum the task vectors, so N identical models give
                // base + N * (model - base) by design; normalizing makes the identity hold and keeps it checked.
                return contract.withParameters(Map.of("normalize", "true"));
            case "breadcrumbs":
                // As above, plus gamma drops the largest entries of the task vector by design; gamma 0 keeps all.
                return contract.withParameters(Map.of("normalize", "true", "gamma", "0"));
            case "slerp":
                // Defined for exactly two models; it refuses other counts with a KilnException.
                return contract.withModelCounts(2);
            case "model-stock":
                // Needs at least two models besides the base (it measures the angle between task vectors).
                return contract.withModelCounts(2, 3);
            case "pcb":
                // PCB weights each entry by its min-max normalised balance score, so even with ratio 1 and no
                // clipping some entries of N identical models do not come back unchanged (seen: index 28 of 42).
                return contract.skip(TechniqueContract.IDENTICAL_MODELS);
            default:
                return contract;
        }
    }
}
