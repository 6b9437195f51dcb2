package dev.kiln.core.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import java.io.PrintStream;

/** Prints each event as one JSON line; thread-safe so parallel work can report. */
public final class JsonLinesSink implements EventSink {
    private final PrintStream out;

    public JsonLinesSink(PrintStream out) {
        this.out = out;
    }

    @Override
    public synchronized void emit(Event event) {
        try {
            out.println(Json.MAPPER.writeValueAsString(event));
        } catch (JsonProcessingException e) {
            out.println("{\"type\":\"log\",\"level\":\"warn\",\"message\":\"unserialisable event: "
                    + e.getOriginalMessage().replace("\"", "'") + "\"}");
        }
    }
}
