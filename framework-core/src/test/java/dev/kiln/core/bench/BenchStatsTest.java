package dev.kiln.core.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

class BenchStatsTest {

    @Test
    void percentilesInterpolateBetweenRanksByHand() {
        // Sorted: 1 2 3 4 10. Rank of p is p/100 * 4.
        double[] values = {10, 2, 4, 1, 3};
        assertEquals(3.0, BenchStats.median(values), 0);
        assertEquals(1.0, BenchStats.percentile(values, 0), 0);
        assertEquals(10.0, BenchStats.percentile(values, 100), 0);
        // rank 3.8: 4 + 0.8 * (10 - 4) = 8.8
        assertEquals(8.8, BenchStats.percentile(values, 95), 1e-12);
        // rank 1: exactly the second smallest
        assertEquals(2.0, BenchStats.percentile(values, 25), 0);
        // rank 0.4: 1 + 0.4 * (2 - 1)
        assertEquals(1.4, BenchStats.percentile(values, 10), 1e-12);
        // the input is left unsorted
        assertArrayEquals(new double[] {10, 2, 4, 1, 3}, values, 0);
    }

    @Test
    void medianOfEvenCountIsMeanOfMiddlePair() {
        assertEquals(2.5, BenchStats.median(List.of(4.0, 1.0, 3.0, 2.0)), 1e-12);
        // p95 of 4 values: rank 2.85 -> 3 + 0.85 * (4 - 3)
        assertEquals(3.85, BenchStats.percentile(List.of(4.0, 1.0, 3.0, 2.0), 95), 1e-12);
        assertEquals(7.0, BenchStats.percentile(new double[] {7}, 95), 0);
    }

    @Test
    void refusesEmptyInputAndBadPercentiles() {
        assertThrows(IllegalArgumentException.class, () -> BenchStats.median(new double[0]));
        assertThrows(IllegalArgumentException.class, () -> BenchStats.percentile(new double[] {1}, 101));
        assertThrows(IllegalArgumentException.class, () -> BenchStats.percentile(new double[] {1}, Double.NaN));
    }
}
