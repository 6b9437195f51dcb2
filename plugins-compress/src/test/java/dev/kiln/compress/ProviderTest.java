package dev.kiln.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Technique;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ProviderTest {
    private static final List<String> IDS =
            List.of("magnitude", "nm", "structured", "low-rank", "int8", "low-rank-sparse");

    @Test
    void everyTechniqueIsDiscoveredAndDocumented() {
        List<String> found = Support.REGISTRY.all(Kind.COMPRESS).stream().map(Technique::id)
                .collect(Collectors.toList());
        assertTrue(found.containsAll(IDS), "found " + found);
        for (String id : IDS) {
            Technique<?> technique = Support.REGISTRY.find(Kind.COMPRESS, id);
            assertFalse(technique.summary().isEmpty(), id);
            assertFalse(technique.reference().isEmpty(), id);
            assertTrue(technique.create(Parameters.defaults(technique)) instanceof Compressor, id);
        }
    }

    @Test
    void outputsBelongToTheCallerAndTheInputIsUntouched() {
        Random random = new Random(31);
        float[] w = Support.gaussian(random, 16 * 8, 1.0);
        for (String id : IDS) {
            NDArray[] outputs;
            try (NDManager caller = Support.MANAGER.newSubManager()) {
                NDArray weight = caller.create(w.clone(), new ai.djl.ndarray.types.Shape(16, 8));
                CompressedTensor out = Support.compressor(id, Map.of()).compress("w", weight);
                assertEquals(weight.getShape(), out.reconstruction().getShape(), id);
                assertArrayEquals(w, weight.toFloatArray(), 0f, id + " modified its input");
                outputs = out.stored().values().toArray(new NDArray[0]);
                for (NDArray array : outputs) {
                    assertFalse(array.isReleased(), id + ": stored tensor released with the scope");
                }
                assertFalse(out.reconstruction().isReleased(), id);
            }
            for (NDArray array : outputs) {
                assertTrue(array.isReleased(), id + ": stored tensor not owned by the caller's manager");
            }
        }
    }

    @Test
    void lowRankSparseAtZeroAndFullDensity() {
        Random random = new Random(32);
        float[] w = Support.gaussian(random, 10 * 9, 1.0);
        CompressedTensor none = Support.compressor("low-rank-sparse", Map.of("rank", "2", "residual-density", "0"))
                .compress("w", Support.array(w, 10, 9));
        assertEquals(0, none.stored().get(".residual").size());
        float[] lowRank = none.stored().get(".u").matMul(none.stored().get(".v")).toFloatArray();
        assertEquals(0, LowRankTest.frobeniusDistance(lowRank, none.reconstruction().toFloatArray()), 1e-6);
        CompressedTensor all = Support.compressor("low-rank-sparse", Map.of("rank", "2", "residual-density", "1"))
                .compress("w", Support.array(w, 10, 9));
        assertEquals(90, all.stored().get(".residual").size());
        assertEquals(0, LowRankTest.frobeniusDistance(w, all.reconstruction().toFloatArray()), 1e-5);
    }
}
