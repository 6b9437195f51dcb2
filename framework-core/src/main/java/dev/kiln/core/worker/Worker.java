package dev.kiln.core.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.google.inject.Guice;
import com.google.inject.Injector;
import com.google.inject.Key;
import com.google.inject.ProvisionException;
import com.google.inject.TypeLiteral;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeSet;

/**
 * The worker's entry point: reads a {@link WorkerRequest}, runs its goal, reports events, and exits with
 * {@link #EXIT_OK}, {@link #EXIT_USER_ERROR} (bad input, missed gate) or {@link #EXIT_INTERNAL_ERROR}.
 *
 * <p>Forked by the Maven plugin with the plugin realm's class path, so technique jars the user adds under the
 * plugin's {@code <dependencies>} are on it. stdout carries only the JSON event stream; anything else a library
 * prints goes to stderr.
 */
public final class Worker {
    public static final int EXIT_OK = 0;
    public static final int EXIT_USER_ERROR = 1;
    public static final int EXIT_INTERNAL_ERROR = 2;
    /** Exit code when the build that started the worker went away (its pipe to our stdin closed). */
    public static final int EXIT_ORPHANED = 3;

    private Worker() {
    }

    /** {@code java -cp ... dev.kiln.core.worker.Worker request.json [--watch-parent]}. */
    public static void main(String[] args) {
        PrintStream events = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true,
                StandardCharsets.UTF_8);
        System.setOut(System.err);
        EventSink sink = new JsonLinesSink(events);
        if (args.length < 1) {
            sink.emit(Event.error(false, "usage: Worker <request.json> [--watch-parent]"));
            System.exit(EXIT_INTERNAL_ERROR);
        }
        if (args.length > 1 && args[1].equals("--watch-parent")) {
            watchParent(System.in);
        }
        int code;
        try {
            WorkerRequest request = readRequest(Path.of(args[0]));
            code = run(request, sink, Worker.class.getClassLoader());
        } catch (KilnException e) {
            sink.emit(Event.error(true, e.getMessage()));
            code = EXIT_USER_ERROR;
        }
        events.flush();
        System.exit(code);
    }

    /** Runs one request in this JVM; used by {@link #main} and by the plugin's in-process mode. */
    public static int run(WorkerRequest request, EventSink sink, ClassLoader techniqueLoader) {
        try {
            Injector injector = Guice.createInjector(new WorkerModule(techniqueLoader));
            Map<String, Goal> goals = injector.getInstance(Key.get(new TypeLiteral<Map<String, Goal>>() { }));
            Goal goal = goals.get(request.goal());
            if (goal == null) {
                throw new KilnException("unknown goal '" + request.goal() + "'; this worker runs: "
                        + new TreeSet<>(goals.keySet()));
            }
            Map<String, Object> result = goal.run(request, sink);
            sink.emit(Event.result(result));
            return EXIT_OK;
        } catch (Throwable e) {
            KilnException userError = userError(e);
            if (userError != null) {
                sink.emit(Event.error(true, userError.getMessage()));
                return EXIT_USER_ERROR;
            }
            java.io.StringWriter trace = new java.io.StringWriter();
            e.printStackTrace(new java.io.PrintWriter(trace));
            System.err.println(trace);
            sink.emit(Event.error(false, "internal error in goal '" + request.goal() + "': " + e));
            return EXIT_INTERNAL_ERROR;
        }
    }

    /** Finds a user error behind Guice's wrapping (a provider that threw while the registry was discovered). */
    private static KilnException userError(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof KilnException) {
                return (KilnException) t;
            }
            if (t instanceof ProvisionException && t.getCause() == null) {
                break;
            }
        }
        return null;
    }

    /** Reads and checks a request file; a malformed one names the file and the problem. */
    public static WorkerRequest readRequest(Path file) {
        try {
            WorkerRequest request = Json.MAPPER.readValue(Files.readString(file), WorkerRequest.class);
            if (request.goal() == null || request.goal().isBlank()) {
                throw new KilnException("request " + file + " names no goal");
            }
            return request;
        } catch (NoSuchFileException e) {
            throw new KilnException("request file " + file + " does not exist");
        } catch (JsonProcessingException e) {
            throw new KilnException("request file " + file + " is not a valid request: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw new KilnException("cannot read request file " + file + ": " + e.getMessage());
        }
    }

    /**
     * Exits when stdin reaches end-of-file: the plugin keeps a pipe to our stdin open for as long as it lives, so EOF
     * means Maven died or was killed, and an orphaned worker must not keep training. Outputs are written atomically,
     * so stopping here never leaves a half-written file.
     */
    static void watchParent(InputStream parentPipe) {
        Thread watcher = new Thread(() -> {
            try {
                while (parentPipe.read() >= 0) {
                    // The plugin never writes; any bytes are ignored.
                }
            } catch (IOException ignored) {
                // A broken pipe means the same as EOF.
            }
            Runtime.getRuntime().halt(EXIT_ORPHANED);
        }, "kiln-parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }
}
