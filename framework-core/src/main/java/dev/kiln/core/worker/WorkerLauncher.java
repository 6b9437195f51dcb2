package dev.kiln.core.worker;

import com.fasterxml.jackson.core.type.TypeReference;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Forks a worker JVM for one request and turns its output into events.
 *
 * <p>The class path goes through a {@code @argfile}, so no command-line length limit applies. The child's stdin
 * stays an open pipe that the worker watches: if this JVM dies, the worker exits too. A shutdown hook kills the child
 * when Maven is interrupted (Ctrl-C).
 */
public final class WorkerLauncher {
    private static final int STDERR_TAIL_LINES = 40;

    /**
     * glibc malloc settings for the worker, unless the user's environment sets {@code GLIBC_TUNABLES} itself. libtorch
     * allocates every CPU tensor with malloc; by default glibc serves a few-MiB tensor from fresh mmap'd pages or
     * returns freed arena memory to the kernel, so the next tensor of that size page-faults all of it in again. A
     * merge makes tens of such temporaries per block: on the 3 x 1.5 GB merge benchmark a ties merge took about
     * 800,000 page faults and a quarter of its CPU time in the kernel. Serving tensors up to 32 MiB from the arenas
     * and keeping freed memory (trim threshold 4 GiB) cut that to about 200,000. Peak resident memory is what the
     * process used at its peak either way; it is just not handed back between tensors. Other C libraries ignore it.
     */
    public static final String MALLOC_TUNABLES =
            "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296";

    /**
     * How to start the worker JVM.
     *
     * @param java the java executable
     * @param jvmArgs extra JVM arguments (heap size, system properties)
     * @param environment extra environment variables
     * @param workDir the folder for the request and argument files (usually under target/)
     */
    public record Options(Path java, List<String> jvmArgs, Map<String, String> environment, Path workDir) {

        /** The java of the running JVM. */
        public static Path currentJava() {
            return Path.of(System.getProperty("java.home"), "bin", "java");
        }
    }

    /**
     * How the worker ended.
     *
     * @param exitCode the worker's exit code
     * @param errorMessage the message of its error event, or null
     * @param userError whether that error was the user's to fix
     * @param result the data of its result event, or an empty map
     * @param stderrTail the last lines it wrote to stderr, for crash reports
     */
    public record Outcome(int exitCode, String errorMessage, boolean userError, Map<String, Object> result,
            List<String> stderrTail) {
    }

    private WorkerLauncher() {
    }

    /**
     * Runs {@code request} in a new JVM with {@code classPath}; events are handed to {@code sink} as they arrive,
     * stderr lines to {@code stderrSink}.
     */
    public static Outcome launch(WorkerRequest request, List<Path> classPath, Options options, EventSink sink,
            Consumer<String> stderrSink) throws IOException, InterruptedException {
        Files.createDirectories(options.workDir());
        Path requestFile = Files.createTempFile(options.workDir(), request.goal() + "-", ".json");
        Path argFile = Files.createTempFile(options.workDir(), request.goal() + "-", ".args");
        try {
            Files.writeString(requestFile, Json.MAPPER.writeValueAsString(request));
            StringBuilder cp = new StringBuilder();
            for (Path entry : classPath) {
                if (cp.length() > 0) {
                    cp.append(File.pathSeparatorChar);
                }
                cp.append(entry.toAbsolutePath());
            }
            Files.writeString(argFile, "-cp \"" + cp.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"\n");

            List<String> command = new ArrayList<>();
            command.add(options.java().toString());
            command.add("-Dai.djl.offline=true");
            command.add("-Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error");
            command.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
            command.addAll(options.jvmArgs());
            command.add("@" + argFile);
            command.add(Worker.class.getName());
            command.add(requestFile.toString());
            command.add("--watch-parent");

            ProcessBuilder builder = new ProcessBuilder(command);
            builder.environment().put("OPT_OUT_TRACKING", "true");
            if (!builder.environment().containsKey("GLIBC_TUNABLES")) {
                builder.environment().put("GLIBC_TUNABLES", MALLOC_TUNABLES);
            }
            builder.environment().putAll(options.environment());
            Process process = builder.start();
            Thread killer = new Thread(process::destroyForcibly, "kiln-worker-killer");
            Runtime.getRuntime().addShutdownHook(killer);
            try {
                return pump(process, sink, stderrSink);
            } finally {
                process.destroyForcibly();
                try {
                    Runtime.getRuntime().removeShutdownHook(killer);
                } catch (IllegalStateException shuttingDown) {
                    // The JVM is already exiting; the hook will run.
                }
            }
        } finally {
            Files.deleteIfExists(requestFile);
            Files.deleteIfExists(argFile);
        }
    }

    private static Outcome pump(Process process, EventSink sink, Consumer<String> stderrSink)
            throws InterruptedException {
        Deque<String> stderrTail = new ArrayDeque<>();
        Thread errPump = new Thread(() -> readLines(process.getErrorStream(), line -> {
            synchronized (stderrTail) {
                stderrTail.addLast(line);
                if (stderrTail.size() > STDERR_TAIL_LINES) {
                    stderrTail.removeFirst();
                }
            }
            stderrSink.accept(line);
        }), "kiln-worker-stderr");
        errPump.setDaemon(true);
        errPump.start();

        String[] error = {null};
        boolean[] userError = {false};
        @SuppressWarnings("unchecked")
        Map<String, Object>[] result = new Map[] {Map.of()};
        readLines(process.getInputStream(), line -> {
            Event event = parse(line);
            if ("error".equals(event.type())) {
                error[0] = event.message();
                userError[0] = event.data() != null && "user".equals(event.data().get("kind"));
            } else if ("result".equals(event.type())) {
                result[0] = event.data() == null ? Map.of() : event.data();
            }
            sink.emit(event);
        });
        int code = process.waitFor();
        errPump.join(2000);
        synchronized (stderrTail) {
            return new Outcome(code, error[0], userError[0], result[0], List.copyOf(stderrTail));
        }
    }

    /** A JSON event line, or any other line a library printed, shown as an info log line. */
    static Event parse(String line) {
        if (line.startsWith("{")) {
            try {
                Map<String, Object> fields = Json.MAPPER.readValue(line, new TypeReference<Map<String, Object>>() { });
                @SuppressWarnings("unchecked")
                Map<String, Object> data = (Map<String, Object>) fields.get("data");
                return new Event((String) fields.get("type"), (String) fields.get("level"),
                        (String) fields.get("message"), data);
            } catch (IOException | ClassCastException notAnEvent) {
                // Falls through: shown as a plain line.
            }
        }
        return Event.info(line);
    }

    private static void readLines(InputStream stream, Consumer<String> consumer) {
        try (BufferedReader reader = new BufferedReader(new InputStreamReader(stream, StandardCharsets.UTF_8))) {
            String line;
            while ((line = reader.readLine()) != null) {
                consumer.accept(line);
            }
        } catch (IOException e) {
            consumer.accept("(worker output ended: " + e.getMessage() + ")");
        }
    }
}
