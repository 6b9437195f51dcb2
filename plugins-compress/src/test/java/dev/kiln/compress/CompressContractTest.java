package dev.kiln.compress;

import dev.kiln.spi.Technique;
import dev.kiln.testkit.TechniqueContract;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** Every compressor this jar lists keeps the technique contract of kiln-testkit. */
class CompressContractTest {

    @Test
    void providerKeepsTheContract() {
        TechniqueContract.checkProvider(new CompressTechniques());
    }

    @TestFactory
    Stream<DynamicTest> everyTechniqueKeepsTheContract() {
        return new CompressTechniques().techniques().stream()
                .map(t -> DynamicTest.dynamicTest(t.id(), () -> contract(t).check()));
    }

    private static TechniqueContract contract(Technique<?> technique) {
        return TechniqueContract.forTechnique(technique);
    }
}
