package dev.kiln.spi;

import java.util.List;

/**
 * The entry point of a technique jar, listed in
 * {@code META-INF/services/dev.kiln.spi.TechniqueProvider}. One provider per jar is the convention.
 *
 * <pre>{@code
 * public final class AcmeTechniques implements TechniqueProvider {
 *     public String spiVersion() { return KilnSpi.VERSION; }   // compiled in: the SPI this jar was built for
 *     public List<Technique<?>> techniques() { return List.of(new Cutout()); }
 * }
 * }</pre>
 *
 * <p>Provider classes need a public no-argument constructor and must be cheap to construct: the registry
 * instantiates every provider when it discovers techniques.
 */
public interface TechniqueProvider {

    /** Return {@link KilnSpi#VERSION}; the constant is compiled into the jar and checked at load time. */
    String spiVersion();

    /** The techniques this jar contributes. */
    List<Technique<?>> techniques();
}
