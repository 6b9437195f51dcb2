package dev.kiln.core.worker;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.Map;

/**
 * One message from the worker to the build: a log line, a progress line, the goal's result, or the error that ended
 * it. Forked workers print each event as one JSON line on stdout.
 *
 * @param type {@code log}, {@code progress}, {@code result} or {@code error}
 * @param level {@code debug}, {@code info}, {@code warn} or {@code error} (log and progress events)
 * @param message the human-readable line
 * @param data structured values: metrics, output files (result events), the error kind
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record Event(String type, String level, String message, Map<String, Object> data) {

    public static Event info(String message) {
        return new Event("log", "info", message, null);
    }

    public static Event warn(String message) {
        return new Event("log", "warn", message, null);
    }

    public static Event debug(String message) {
        return new Event("log", "debug", message, null);
    }

    /** A progress line; {@code data} carries the numbers (epoch, step, loss, ...). */
    public static Event progress(String message, Map<String, Object> data) {
        return new Event("progress", "info", message, data);
    }

    /** The goal's result (output files, metrics), sent once at the end. */
    public static Event result(Map<String, Object> data) {
        return new Event("result", null, null, data);
    }

    /** The error that ended the goal: {@code user} errors fail the build, {@code internal} ones are bugs. */
    public static Event error(boolean userError, String message) {
        return new Event("error", "error", message, Map.of("kind", userError ? "user" : "internal"));
    }
}
