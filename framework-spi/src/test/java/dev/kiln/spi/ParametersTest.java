package dev.kiln.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.fixtures.AlphaProvider;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ParametersTest {
    private final Technique<?> ties = new AlphaProvider().techniques().get(0);

    @Test
    void bindsDefaultsAndOverrides() {
        Parameters defaults = Parameters.defaults(ties);
        assertEquals(0.2, defaults.getDouble("density"));
        assertEquals("per-tensor", defaults.getString("trim"));

        Parameters set = Parameters.bind(ties, Map.of("density", " 0.5 ", "trim", "global"));
        assertEquals(0.5, set.getDouble("density"));
        assertEquals("global", set.getString("trim"));
    }

    @Test
    void outOfRangeValueNamesTechniqueParameterAndRange() {
        KilnException e = assertThrows(KilnException.class, () -> Parameters.bind(ties, Map.of("density", "1.5")));
        assertEquals("parameter 'density' of merge method 'ties': 1.5 is outside the allowed range [0.0, 1.0]",
                e.getMessage());
    }

    @Test
    void unparsableValueSaysWhatWasExpected() {
        KilnException e = assertThrows(KilnException.class, () -> Parameters.bind(ties, Map.of("density", "lots")));
        assertTrue(e.getMessage().contains("'lots' is not a number"), e.getMessage());
        KilnException nan = assertThrows(KilnException.class, () -> Parameters.bind(ties, Map.of("density", "NaN")));
        assertTrue(nan.getMessage().contains("is not a number"), nan.getMessage());
    }

    @Test
    void unknownParameterSuggestsTheClosest() {
        KilnException e = assertThrows(KilnException.class, () -> Parameters.bind(ties, Map.of("densty", "0.1")));
        assertTrue(e.getMessage().startsWith("unknown parameter 'densty' for merge method 'ties'; did you mean "
                + "'density'?"), e.getMessage());
        assertTrue(e.getMessage().contains("density, trim"), e.getMessage());
    }

    @Test
    void badChoiceListsTheChoices() {
        KilnException e = assertThrows(KilnException.class, () -> Parameters.bind(ties, Map.of("trim", "all")));
        assertTrue(e.getMessage().contains("is not one of: per-tensor, global"), e.getMessage());
    }

    @Test
    void requiredParameterMustBeGiven() {
        Technique<?> needsAlpha = SimpleTechnique.of(Kind.AUGMENT, "x", "",
                List.of(ParameterSpec.decimal("alpha", null, "shape").greaterThan(0)), p -> null);
        KilnException e = assertThrows(KilnException.class, () -> Parameters.defaults(needsAlpha));
        assertTrue(e.getMessage().startsWith("missing required parameter 'alpha'"), e.getMessage());
        assertEquals(0.0 < Parameters.bind(needsAlpha, Map.of("alpha", "inf")).getDouble("alpha") ? 1 : 0, 1);
        KilnException zero = assertThrows(KilnException.class, () -> Parameters.bind(needsAlpha,
                Map.of("alpha", "0")));
        assertTrue(zero.getMessage().contains("(0.0, inf)"), zero.getMessage());
    }

    @Test
    void specRejectsADefaultOutsideItsRange() {
        assertThrows(IllegalArgumentException.class,
                () -> ParameterSpec.decimal("p", 2.0, "prob").between(0, 1));
        assertThrows(IllegalArgumentException.class,
                () -> ParameterSpec.choice("mode", "c", List.of("a", "b"), "mode"));
    }

    @Test
    void integersAndFlags() {
        Technique<?> t = SimpleTechnique.of(Kind.COMPRESS, "nm", "", List.of(
                ParameterSpec.integer("n", 2L, "kept per group").atLeast(1),
                ParameterSpec.flag("global", false, "one threshold for the model")), p -> null);
        Parameters p = Parameters.bind(t, Map.of("n", "4", "global", "TRUE"));
        assertEquals(4, p.getInt("n"));
        assertTrue(p.getBoolean("global"));
        assertThrows(KilnException.class, () -> Parameters.bind(t, Map.of("n", "2.5")));
        assertThrows(KilnException.class, () -> Parameters.bind(t, Map.of("n", "0")));
        assertThrows(KilnException.class, () -> Parameters.bind(t, Map.of("global", "yes")));
    }

    @Test
    void editDistanceCountsSwapsAsOneEdit() {
        assertEquals(1, Names.distance("ties", "tise"));
        assertEquals(1, Names.distance("tie", "ties"));
        assertEquals("cutmix", Names.closest("cutmx", List.of("mixup", "cutmix", "fmix")));
        assertEquals(null, Names.closest("zzz", List.of("mixup", "cutmix")));
    }
}
