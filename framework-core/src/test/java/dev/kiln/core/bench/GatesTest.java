package dev.kiln.core.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.KilnException;
import java.util.List;
import org.junit.jupiter.api.Test;

class GatesTest {
    private final BenchmarkResult result = Fixtures.result();

    @Test
    void allBarsMetGivesNoMisses() {
        List<Gates.Check> checks = Gates.evaluate(List.of(new Gates.Gate(null, 0.8, 0.06, null, 12.0),
                new Gates.Gate("half", null, null, 1.5, null)), result);
        // minAccuracy x2, maxAccuracyDrop for half only, latency x2, minSpeedup for half.
        assertEquals(6, checks.size());
        assertTrue(Gates.misses(checks).isEmpty(), checks.toString());
        assertEquals("gate minSpeedup for variant 'half' met: measured 1.6 >= required 1.5",
                checks.get(5).message());
    }

    @Test
    void minAccuracyMissNamesGateVariantBarAndValue() {
        List<Gates.Check> misses = Gates.misses(Gates.evaluate(List.of(new Gates.Gate("full", 0.95, null, null,
                null)), result));
        assertEquals(1, misses.size());
        assertEquals("gate minAccuracy for variant 'full' missed: measured 0.9 < required 0.95",
                misses.get(0).message());
    }

    @Test
    void accuracyDropIsMeasuredAgainstTheBaseline() {
        List<Gates.Check> checks = Gates.evaluate(List.of(new Gates.Gate(null, null, 0.04, null, null)), result);
        assertEquals(1, checks.size());
        Gates.Check drop = checks.get(0);
        assertEquals("half", drop.variant());
        assertEquals(0.05, drop.measured(), 1e-12);
        assertFalse(drop.passed());
        assertEquals("gate maxAccuracyDrop for variant 'half' missed: measured 0.05 > allowed 0.04", drop.message());
    }

    @Test
    void speedupAndLatencyMisses() {
        List<Gates.Check> misses = Gates.misses(Gates.evaluate(List.of(new Gates.Gate("half", null, null, 1.7,
                5.5)), result));
        assertEquals(List.of("gate minSpeedup for variant 'half' missed: measured 1.6 < required 1.7",
                "gate maxLatencyP95Millis for variant 'half' missed: measured 6 > allowed 5.5"),
                misses.stream().map(Gates.Check::message).toList());
    }

    @Test
    void everyMissIsListedInTheFailure() {
        List<Gates.Check> misses = Gates.misses(Gates.evaluate(List.of(new Gates.Gate(null, 0.99, 0.01, 2.0, 1.0)),
                result));
        // accuracy x2, drop (half), speedup (half), latency x2
        assertEquals(6, misses.size());
        KilnException e = Gates.failure(misses, "target/report.md");
        assertTrue(e.getMessage().startsWith("6 benchmark gates missed (report: target/report.md):"),
                e.getMessage());
        for (Gates.Check miss : misses) {
            assertTrue(e.getMessage().contains(miss.message()), miss.message());
        }
        assertTrue(e.getMessage().contains("gate minAccuracy for variant 'full' missed: measured 0.9 < required"
                + " 0.99"));
    }

    @Test
    void unknownVariantAndOutOfRangeBarsAreRefused() {
        KilnException e = assertThrows(KilnException.class, () -> Gates.validate(
                List.of(new Gates.Gate("quarter", null, null, 2.0, null)), List.of("full", "half")));
        assertTrue(e.getMessage().contains("'quarter'") && e.getMessage().contains("full, half"), e.getMessage());
        KilnException range = assertThrows(KilnException.class, () -> new Gates.Gate(null, 1.5, null, null, null));
        assertTrue(range.getMessage().contains("minAccuracy is 1.5"), range.getMessage());
    }
}
