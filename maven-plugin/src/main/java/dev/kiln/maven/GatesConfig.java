package dev.kiln.maven;

import java.util.ArrayList;
import java.util.List;

/**
 * The benchmark's bars. Bars written directly inside {@code <gates>} apply to every variant; {@code <gate>}
 * elements, as many as needed, hold one variant's bars:
 *
 * <pre>{@code
 * <gates>
 *   <minAccuracy>0.8</minAccuracy>
 *   <gate><variant>half</variant><minSpeedup>1.5</minSpeedup></gate>
 * </gates>
 * }</pre>
 *
 * <p>Maven's configurator calls {@link #addGate} once per {@code <gate>} element (it looks for an {@code add}
 * method when there is no setter), which is what lets the repeated element sit next to the global bars.
 */
public class GatesConfig extends GateConfig {
    private final List<GateConfig> perVariant = new ArrayList<>();

    /** Adds one {@code <gate>}: the bars of one variant. */
    public void addGate(GateConfig gate) {
        perVariant.add(gate);
    }

    /** The per-variant gates, in pom order. */
    public List<GateConfig> perVariant() {
        return perVariant;
    }
}
