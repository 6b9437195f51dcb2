package dev.kiln.core.engine;

import ai.djl.engine.Engine;
import ai.djl.engine.EngineException;
import dev.kiln.spi.KilnException;
import java.util.Locale;

/**
 * Starts DJL's PyTorch engine offline from the natives bundled on the class path.
 *
 * <p>Properties are set before the engine class initialises, because libtorch reads thread counts once at start and
 * DJL reads the cache directory once. Failures become a {@link KilnException} that says what to do, instead of DJL's
 * "Failed to load PyTorch native library" with a download URL that cannot be reached offline.
 */
public final class EngineStarter {
    private static final String ENGINE = "PyTorch";

    private EngineStarter() {
    }

    /** Starts (or returns the already started) engine with these settings. */
    public static synchronized Engine start(EngineSettings settings) {
        // Nothing is ever downloaded: the CPU natives come from Maven Central as a jar on the class path.
        System.setProperty("ai.djl.offline", "true");
        if (System.getenv("OPT_OUT_TRACKING") == null) {
            System.setProperty("OPT_OUT_TRACKING", "true");
        }
        if (settings.threads() > 0) {
            System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(settings.threads()));
        }
        if (settings.interopThreads() > 0) {
            System.setProperty("ai.djl.pytorch.num_interop_threads", Integer.toString(settings.interopThreads()));
        }
        if (settings.cacheDir() != null) {
            System.setProperty("DJL_CACHE_DIR", settings.cacheDir().toAbsolutePath().toString());
        }
        Engine engine;
        try {
            engine = Engine.getEngine(ENGINE);
        } catch (EngineException | UnsatisfiedLinkError | IllegalArgumentException e) {
            throw new KilnException(explain(e), e);
        }
        if (settings.seed() != null) {
            engine.setRandomSeed(settings.seed().intValue());
        }
        return engine;
    }

    static String explain(Throwable e) {
        String os = System.getProperty("os.name", "?").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "?");
        StringBuilder message = new StringBuilder("could not start the PyTorch engine: ").append(rootMessage(e));
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            message.append(". Kiln bundles libtorch CPU natives for linux-x86_64 only; this machine is ")
                    .append(os).append('/').append(arch)
                    .append(": add the ai.djl.pytorch:pytorch-native-* jar for this platform to the plugin's")
                    .append(" <dependencies>, or set PYTORCH_LIBRARY_PATH to a local libtorch 2.7.1");
        } else {
            message.append(". The natives jar ai.djl.pytorch:pytorch-native-cpu:2.7.1:linux-x86_64 must be on the")
                    .append(" class path (it is a dependency of kiln-core); if DJL_CACHE_DIR points to a folder")
                    .append(" that is not writable, choose another with <cacheDir> or -Dkiln.cacheDir");
        }
        return message.toString();
    }

    private static String rootMessage(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return root.getMessage() == null ? root.toString() : root.getMessage();
    }
}
