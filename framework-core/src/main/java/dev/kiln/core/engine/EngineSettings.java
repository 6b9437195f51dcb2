package dev.kiln.core.engine;

import java.nio.file.Path;

/**
 * How the tensor engine starts in a worker.
 *
 * @param threads intra-op threads for libtorch; 0 keeps libtorch's default (one per core)
 * @param interopThreads inter-op threads; 0 keeps the default
 * @param cacheDir where DJL unpacks the bundled natives; null keeps DJL's default ({@code ~/.djl.ai})
 * @param seed the engine's random seed, or null to leave it unseeded
 */
public record EngineSettings(int threads, int interopThreads, Path cacheDir, Long seed) {

    /** libtorch's defaults, DJL's cache, no seed. */
    public static EngineSettings defaults() {
        return new EngineSettings(0, 0, null, null);
    }
}
