package dev.kiln.benchmarks.merge;

import dev.kiln.benchmarks.Machine;
import dev.kiln.core.merge.MergePipeline;
import dev.kiln.core.merge.MergeSpec;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.merge.MergeMethod;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Helpers shared by the merge benchmark runners: arguments, machine description, peak RSS, running a merge. */
final class BenchSupport {

    private BenchSupport() {
    }

    /** {@code --name value} pairs; anything else is refused so that a typo does not silently run defaults. */
    static Map<String, String> parse(String[] args) {
        Map<String, String> options = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new KilnException("argument '" + args[i] + "' must be --name value");
            }
            options.put(args[i].substring(2), args[++i]);
        }
        return options;
    }

    /** The merge method {@code id} created exactly as a pom would create it (registry discovery, bound params). */
    static MergeMethod method(String id, Map<String, String> params) {
        Registry registry = Registry.discover(BenchSupport.class.getClassLoader());
        return registry.create(Kind.MERGE, MergeMethod.class, id, params);
    }

    /** Runs one merge through the real pipeline (validation, streaming, report) and returns its report. */
    static Map<String, Object> merge(String id, Map<String, String> params, Path base, List<Path> models,
            Path output, int threads, long seed) {
        return mergeInputs(id, params, base, models.stream().map(MergeSpec.ModelInput::of).toList(), output,
                threads, seed);
    }

    /** {@link #merge} with model inputs that may carry statistics (a Fisher per model). */
    static Map<String, Object> mergeInputs(String id, Map<String, String> params, Path base,
            List<MergeSpec.ModelInput> inputs, Path output, int threads, long seed) {
        MergeSpec spec = new MergeSpec(id, params, base, inputs, output, threads, seed, null, 0, false);
        return new MergePipeline(method(id, params), spec, null).run();
    }

    /** This process's peak resident set size (VmHWM) in bytes, or -1 where /proc is not available. */
    static long peakRss() {
        return procStatus("VmHWM:");
    }

    /** This process's current resident set size (VmRSS) in bytes, or -1. */
    static long currentRss() {
        return procStatus("VmRSS:");
    }

    private static long procStatus(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(key)) {
                    // The kernel reports kB.
                    return Long.parseLong(line.substring(key.length()).replace("kB", "").trim()) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // Not Linux: the caller reports the value as unknown.
        }
        return -1;
    }



    static String machine() {
        long memory = -1;
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemTotal:")) {
                    memory = Long.parseLong(line.substring(9).replace("kB", "").trim()) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // Unknown memory is reported as such.
        }
        return String.format(java.util.Locale.ROOT, "%s, %d vCPU, %s RAM, no GPU; Java %s, %s %s, DJL 0.36.0 with "
                + "CPU libtorch 2.7.1", Machine.cpuModel(), Runtime.getRuntime().availableProcessors(),
                memory > 0 ? String.format(java.util.Locale.ROOT, "%.1f GiB", memory / (double) (1L << 30))
                        : "unknown", System.getProperty("java.version"), System.getProperty("os.name"),
                System.getProperty("os.arch"));
    }


    static String gib(long bytes) {
        return bytes < 0 ? "unknown" : String.format(java.util.Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30));
    }

    static String mib(long bytes) {
        return bytes < 0 ? "unknown" : String.format(java.util.Locale.ROOT, "%.0f MiB", bytes / (double) (1L << 20));
    }
}
