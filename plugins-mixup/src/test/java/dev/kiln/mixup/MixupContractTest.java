package dev.kiln.mixup;

import dev.kiln.spi.Technique;
import dev.kiln.testkit.TechniqueContract;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** Every augmentation this jar lists keeps the technique contract of kiln-testkit. */
class MixupContractTest {

    @Test
    void providerKeepsTheContract() {
        TechniqueContract.checkProvider(new MixupTechniques());
    }

    @TestFactory
    Stream<DynamicTest> everyTechniqueKeepsTheContract() {
        return new MixupTechniques().techniques().stream()
                .map(t -> DynamicTest.dynamicTest(t.id(), () -> contract(t).check()));
    }

    private static TechniqueContract contract(Technique<?> technique) {
        return TechniqueContract.forTechnique(technique);
    }
}
