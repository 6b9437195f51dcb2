package dev.kiln.compress;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.compress.Compressor;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** N:M applies only where the input length per output row divides into groups of M, so whole models compress. */
class NmAppliesToTest {
    @Test
    void skipsTensorsWhoseRowsDoNotSplitIntoGroups() {
        Compressor twoFour = Support.compressor("nm", Map.of());
        assertTrue(twoFour.appliesTo("fc.weight", new Shape(10, 128)));
        assertTrue(twoFour.appliesTo("conv2.weight", new Shape(64, 32, 5, 5)));
        assertFalse(twoFour.appliesTo("conv1.weight", new Shape(32, 1, 5, 5)), "25 inputs per filter");
        assertFalse(twoFour.appliesTo("fc.bias", new Shape(10)));
        assertFalse(twoFour.appliesTo("odd.weight", new Shape(4, 6)));
    }
}
