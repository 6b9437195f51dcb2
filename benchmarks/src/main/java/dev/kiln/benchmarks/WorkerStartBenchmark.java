package dev.kiln.benchmarks;

import dev.kiln.core.worker.WorkerLauncher;
import dev.kiln.core.worker.WorkerRequest;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The fixed cost of a goal: forking the worker JVM with the plugin's full class path, wiring it, discovering
 * techniques, and (for {@code ping}) starting libtorch. Baseline: starting a JVM on the same class path that does
 * nothing, measured in the same run.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2)
@Measurement(iterations = 10)
@Fork(1)
public class WorkerStartBenchmark {
    private List<Path> classPath;
    private Path workDir;
    private WorkerLauncher.Options options;

    @Setup
    public void setUp() throws IOException {
        classPath = new ArrayList<>();
        for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
            classPath.add(Path.of(entry));
        }
        workDir = Files.createTempDirectory("kiln-bench");
        options = new WorkerLauncher.Options(WorkerLauncher.Options.currentJava(), List.of(), Map.of(), workDir);
    }

    /** Baseline: a JVM with the same class path that exits at once. */
    @Benchmark
    public int bareJvm() throws IOException, InterruptedException {
        List<String> command = List.of(WorkerLauncher.Options.currentJava().toString(), "-cp",
                System.getProperty("java.class.path"), NoopMain.class.getName());
        return new ProcessBuilder(command).inheritIO().start().waitFor();
    }

    /** A goal that needs no engine: fork, Guice, technique discovery, events. */
    @Benchmark
    public int workerList() throws IOException, InterruptedException {
        return WorkerLauncher.launch(WorkerRequest.of("list"), classPath, options, e -> { }, line -> { }).exitCode();
    }

    /** Everything a real goal pays before its own work: the above plus starting libtorch. */
    @Benchmark
    public int workerPing() throws IOException, InterruptedException {
        return WorkerLauncher.launch(WorkerRequest.of("ping"), classPath, options, e -> { }, line -> { }).exitCode();
    }
}
