package dev.kiln.core.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.kiln.core.engine.EngineSettings;
import java.nio.file.Path;

/**
 * What the build asks the worker to do: a goal name, the goal's resolved configuration, and engine settings.
 * Written by the mojo as JSON, read by {@link Worker#main}.
 *
 * @param goal the goal name ({@code list}, {@code ping}, {@code train}, ...)
 * @param config the goal's configuration, as bound from the pom
 * @param threads libtorch intra-op threads (0: one per core)
 * @param cacheDir where the natives are unpacked, or null for DJL's default
 * @param offline whether Maven runs offline (nothing is ever downloaded; recorded in reports)
 */
public record WorkerRequest(String goal, JsonNode config, int threads, String cacheDir, boolean offline) {

    /** A request with an empty configuration and default settings. */
    public static WorkerRequest of(String goal) {
        return new WorkerRequest(goal, JsonNodeFactory.instance.objectNode(), 0, null, false);
    }

    /** The engine settings this request implies. */
    public EngineSettings engineSettings() {
        return new EngineSettings(threads, 0, cacheDir == null ? null : Path.of(cacheDir), null);
    }
}
