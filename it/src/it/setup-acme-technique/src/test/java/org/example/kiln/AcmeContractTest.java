package org.example.kiln;

import dev.kiln.spi.Technique;
import dev.kiln.testkit.TechniqueContract;
import org.junit.jupiter.api.Test;

/** The author's own check, with Kiln's test kit: both techniques keep the SPI contract. */
class AcmeContractTest {
    @Test
    void providerKeepsTheContract() {
        TechniqueContract.checkProvider(new AcmeTechniques());
    }

    @Test
    void everyTechniqueKeepsTheContract() {
        for (Technique<?> technique : new AcmeTechniques().techniques()) {
            TechniqueContract.check(technique);
        }
    }
}
