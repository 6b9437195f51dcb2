package dev.kiln.core.worker;

/** Receives the worker's events: printed as JSON lines when forked, handed to the build log when in-process. */
@FunctionalInterface
public interface EventSink {
    void emit(Event event);
}
