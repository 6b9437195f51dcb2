package dev.kiln.core.worker;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.engine.EngineStarter;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Starts the engine and runs one tiny operation: the fixed cost every goal pays, measured by the benchmarks and
 * useful as a health check of the natives on a new machine.
 */
public final class PingGoal implements Goal {

    @Override
    public String name() {
        return "ping";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) {
        long start = System.nanoTime();
        Engine engine = EngineStarter.start(request.engineSettings());
        float sum;
        try (NDManager manager = engine.newBaseManager()) {
            NDArray ones = manager.ones(new ai.djl.ndarray.types.Shape(4));
            sum = ones.sum().getFloat();
        }
        double millis = (System.nanoTime() - start) / 1e6;
        events.emit(Event.info(String.format("engine %s %s ready in %.0f ms (1+1+1+1 = %.0f)", engine.getEngineName(),
                engine.getVersion(), millis, sum)));
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("engine", engine.getEngineName());
        result.put("version", engine.getVersion());
        result.put("engineStartMillis", millis);
        // What the worker's C library was told about malloc (WorkerLauncher.MALLOC_TUNABLES unless overridden).
        result.put("glibcTunables", System.getenv("GLIBC_TUNABLES"));
        return result;
    }
}
