package dev.kiln.core.worker;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** The version of Kiln, recorded in every checkpoint, card and report. */
public final class KilnVersion {
    private static final String VERSION = load();

    private KilnVersion() {
    }

    public static String get() {
        return VERSION;
    }

    private static String load() {
        try (InputStream in = KilnVersion.class.getResourceAsStream("/dev/kiln/core/kiln-version.properties")) {
            if (in == null) {
                return "development";
            }
            Properties properties = new Properties();
            properties.load(in);
            return properties.getProperty("version", "development");
        } catch (IOException e) {
            return "development";
        }
    }
}
