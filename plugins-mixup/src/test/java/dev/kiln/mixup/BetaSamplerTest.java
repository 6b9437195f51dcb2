package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class BetaSamplerTest {
    private static final int DRAWS = 200_000;

    @ParameterizedTest
    @CsvSource({"0.2", "0.7", "1.0", "2.5", "9.0"})
    void gammaMatchesClosedFormMoments(double shape) {
        Random r = new Random(11);
        double sum = 0;
        double sumSq = 0;
        for (int i = 0; i < DRAWS; i++) {
            double g = BetaSampler.gamma(r, shape);
            assertTrue(g >= 0);
            sum += g;
            sumSq += g * g;
        }
        double mean = sum / DRAWS;
        double var = sumSq / DRAWS - mean * mean;
        // Gamma(k, 1): mean k, variance k. Standard error of the mean is sqrt(k / DRAWS).
        assertEquals(shape, mean, 5 * Math.sqrt(shape / DRAWS), "mean");
        assertEquals(shape, var, 0.05 * shape, "variance");
    }

    @ParameterizedTest
    @CsvSource({"0.2,0.2", "0.4,0.4", "1.0,1.0", "2.0,5.0", "0.5,3.0"})
    void betaMatchesClosedFormMoments(double a, double b) {
        Random r = new Random(5);
        double sum = 0;
        double sumSq = 0;
        for (int i = 0; i < DRAWS; i++) {
            double x = BetaSampler.beta(r, a, b);
            assertTrue(x >= 0 && x <= 1, "draw outside [0, 1]: " + x);
            sum += x;
            sumSq += x * x;
        }
        double mean = sum / DRAWS;
        double var = sumSq / DRAWS - mean * mean;
        double expectedMean = a / (a + b);
        double expectedVar = a * b / ((a + b) * (a + b) * (a + b + 1));
        assertEquals(expectedMean, mean, 5 * Math.sqrt(expectedVar / DRAWS), "mean");
        assertEquals(expectedVar, var, 0.03 * expectedVar, "variance");
    }

    @Test
    void smallAlphaPilesUpAtTheEnds() {
        // Beta(0.1, 0.1) puts most of its mass near 0 and 1: the U shape mixup relies on for small alpha.
        Random r = new Random(3);
        int extreme = 0;
        for (int i = 0; i < 10_000; i++) {
            double x = BetaSampler.beta(r, 0.1, 0.1);
            if (x < 0.05 || x > 0.95) {
                extreme++;
            }
        }
        assertTrue(extreme > 7_000, "only " + extreme + " of 10000 draws near the ends");
    }

    @Test
    void rejectsBadShape() {
        assertThrows(IllegalArgumentException.class, () -> BetaSampler.gamma(new Random(1), 0));
        assertThrows(IllegalArgumentException.class, () -> BetaSampler.gamma(new Random(1), Double.NaN));
    }
}
