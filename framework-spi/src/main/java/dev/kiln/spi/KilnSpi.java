package dev.kiln.spi;

/**
 * Version of the technique contract.
 *
 * <p>A {@link TechniqueProvider} returns {@link #VERSION} from {@link TechniqueProvider#spiVersion()}. Because the
 * field is a compile-time constant, the value is copied into the provider's class file when the plugin is compiled:
 * the registry therefore learns which SPI a jar was built for, and refuses a jar built for a newer minor or another
 * major version with a message that names the jar.
 */
public final class KilnSpi {
    /** {@code major.minor}: a new minor only adds default methods; a new major may break providers. */
    public static final String VERSION = "1.2";

    private KilnSpi() {
    }

    /** Whether a provider built against {@code builtFor} can run on this SPI. */
    public static boolean isCompatible(String builtFor) {
        int[] runtime = parse(VERSION);
        int[] built = parse(builtFor);
        return built != null && built[0] == runtime[0] && built[1] <= runtime[1];
    }

    static int[] parse(String version) {
        if (version == null) {
            return null;
        }
        String[] parts = version.trim().split("\\.");
        if (parts.length != 2) {
            return null;
        }
        try {
            return new int[] {Integer.parseInt(parts[0]), Integer.parseInt(parts[1])};
        } catch (NumberFormatException e) {
            return null;
        }
    }
}
