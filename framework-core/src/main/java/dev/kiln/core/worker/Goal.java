package dev.kiln.core.worker;

/**
 * One thing the worker can do. Goals are bound by name in {@link WorkerModule}; each reads its configuration from
 * the request, reports through events and throws {@link dev.kiln.spi.KilnException} for anything the user can fix.
 */
public interface Goal {

    /** The name the mojo puts in the request. */
    String name();

    /** Runs the goal; returns the result data (output paths, metrics) sent in the final result event. */
    java.util.Map<String, Object> run(WorkerRequest request, EventSink events) throws Exception;
}
