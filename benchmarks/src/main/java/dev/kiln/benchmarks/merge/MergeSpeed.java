package dev.kiln.benchmarks.merge;

import dev.kiln.benchmarks.Machine;
import dev.kiln.core.safetensors.SafetensorsReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Merge throughput as a ratio to plainly reading the same files, both measured in this JVM in alternating rounds:
 * <ul>
 *   <li><b>read</b>: every tensor of the three checkpoints read into memory through
 *   {@link SafetensorsReader#readBytes(String)} and dropped;</li>
 *   <li><b>linear</b>: the three files averaged through {@code MergePipeline};</li>
 *   <li><b>ties</b>: the two fine-tunes merged onto the base (density 0.2).</li>
 * </ul>
 * Both merges read the same 3 files, so GB/s of input is (sum of the three file sizes) / seconds for all three rows.
 * The files are read once before the first round so that the page cache is warm for everything timed.
 *
 * <pre>
 * java -Xmx2g -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.merge.MergeSpeed [--dir /tmp/kiln-merge-bench]
 *     [--rounds 2] [--threads 2] [--outdir DIR (default: --dir)] [--out docs/results/merge-speed.md] [--keep false]
 *     [--command "..."]
 * </pre>
 */
public final class MergeSpeed {
    static final double LINEAR_TARGET = 0.5;
    static final double TIES_TARGET = 0.25;

    private MergeSpeed() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = BenchSupport.parse(args);
        Path dir = Path.of(options.getOrDefault("dir", "/tmp/kiln-merge-bench"));
        Path out = Path.of(options.getOrDefault("out", "docs/results/merge-speed.md"));
        int rounds = Integer.parseInt(options.getOrDefault("rounds", "2"));
        int threads = Integer.parseInt(options.getOrDefault("threads", "2"));
        List<Path> files = SyntheticCheckpoints.ensure(dir, 4, 2, 7);
        long input = 0;
        for (Path f : files) {
            input += Files.size(f);
        }
        // The output may go elsewhere than the inputs (e.g. a tmpfs, to separate the disk's write speed from the
        // merge's own work).
        Path outDir = Path.of(options.getOrDefault("outdir", dir.toString()));
        Files.createDirectories(outDir);
        Path output = outDir.resolve("speed-merged.safetensors");
        Map<String, List<Double>> seconds = new LinkedHashMap<>();
        for (String row : List.of("read", "linear", "ties")) {
            seconds.put(row, new ArrayList<>());
        }
        // Seconds each merge spent forcing its output to disk and renaming it (the report's commitSeconds).
        Map<String, List<Double>> commits = new LinkedHashMap<>();
        commits.put("linear", new ArrayList<>());
        commits.put("ties", new ArrayList<>());
        try {
            readAll(files);
            for (int round = 0; round < rounds; round++) {
                String command = options.getOrDefault("command", "(not given)");
                // The page is rewritten after every row so that a run cut short keeps what it measured.
                seconds.get("read").add(time(() -> readAll(files)));
                write(out, command, input, threads, seconds, commits, outDir);
                // The last round's output is deleted before each merge, untimed: replacing it made the commit's
                // rename free 1.5 GiB of pages (0.2 s on tmpfs), the previous run's cost rather than this merge's.
                Files.deleteIfExists(output);
                seconds.get("linear").add(time(() -> commits.get("linear").add(commitSeconds(BenchSupport.merge(
                        "linear", Map.of(), null, files, output, threads, 1L)))));
                write(out, command, input, threads, seconds, commits, outDir);
                Files.deleteIfExists(output);
                seconds.get("ties").add(time(() -> commits.get("ties").add(commitSeconds(BenchSupport.merge("ties",
                        Map.of("density", "0.2"), files.get(0), files.subList(1, files.size()), output, threads,
                        1L)))));
                System.out.println("round " + (round + 1) + ": " + seconds + " commit " + commits);
                write(out, command, input, threads, seconds, commits, outDir);
            }
        } finally {
            Files.deleteIfExists(output);
            Files.deleteIfExists(dev.kiln.core.merge.MergePipeline.reportFile(output));
            if (!Boolean.parseBoolean(options.getOrDefault("keep", "false"))) {
                for (Path f : files) {
                    Files.deleteIfExists(f);
                }
            }
        }
    }

    private static double time(Runnable work) {
        long t0 = System.nanoTime();
        work.run();
        return (System.nanoTime() - t0) / 1e9;
    }

    /** Reads every tensor's bytes into a Java array and drops it; returns a checksum so the JIT cannot skip it. */
    static long readAll(List<Path> files) {
        long sum = 0;
        for (Path f : files) {
            try (SafetensorsReader r = SafetensorsReader.open(f)) {
                for (String name : r.names()) {
                    byte[] bytes = r.readBytes(name);
                    sum += bytes[bytes.length - 1];
                }
            }
        }
        return sum;
    }

    private static double commitSeconds(Map<String, Object> report) {
        Object value = ((Map<?, ?>) report.get("totals")).get("commitSeconds");
        return value instanceof Number n ? n.doubleValue() : 0.0;
    }

    private static double min(List<Double> values) {
        return values.stream().mapToDouble(Double::doubleValue).min().orElse(Double.NaN);
    }

    private static void write(Path out, String command, long input, int threads, Map<String, List<Double>> seconds,
            Map<String, List<Double>> commits, Path outDir) {
        double readBest = min(seconds.get("read"));
        StringBuilder md = new StringBuilder();
        md.append("# Merge speed: GB/s of input merged, as a ratio to reading the same files\n\n");
        md.append(String.format(Locale.ROOT, "Input: the three seeded synthetic Llama-shaped float32 checkpoints of"
                + " `merge-memory.md` (base + two fine-tunes, %s together). All rows are measured in one JVM"
                + " (`" + String.join(" ", java.lang.management.ManagementFactory.getRuntimeMXBean()
                        .getInputArguments()) + "`), in alternating rounds (read, linear, ties), after one untimed"
                + " read of all three files"
                + " so the page cache is warm for every row. **read**: every tensor's bytes read into a Java array"
                + " with `SafetensorsReader.readBytes` and dropped. **linear**: `MergePipeline` averaging the three"
                + " files. **ties**: `MergePipeline`, ties of the two fine-tunes onto the base, density 0.2. Both"
                + " merges use %d merge thread(s), check every input for NaN/Inf, compute the per-tensor report"
                + " statistics (ties: kept density and sign conflicts), and write and fsync a %s output to " + outDir
                + " (the previous round's output is deleted before each merge, untimed)."
                + " GB/s = input bytes (all three files, the same for every row) / seconds. Ratio = merge GB/s /"
                + " read GB/s of the fastest read round (the least disturbed).%n%n", BenchSupport.gib(input),
                threads, BenchSupport.gib(input / 3)));
        String tunables = System.getenv("GLIBC_TUNABLES");
        md.append("Malloc settings: `GLIBC_TUNABLES=" + (tunables == null ? "(unset)" : tunables) + "`"
                + (dev.kiln.core.worker.WorkerLauncher.MALLOC_TUNABLES.equals(tunables)
                        ? " (what kiln:merge's worker JVM runs with).\n\n"
                        : " (**not** what kiln:merge's worker JVM runs with: `"
                                + dev.kiln.core.worker.WorkerLauncher.MALLOC_TUNABLES + "`).\n\n"));
        md.append("Targets (issue 4): linear >= 0.5, ties >= 0.25.\n\n");
        md.append("| row | seconds per round | best seconds | GB/s (best) | ratio to read | target | met |"
                + " commit (fsync + rename) s, best round | ratio without the commit |\n");
        md.append("|---|---|---:|---:|---:|---:|---|---:|---:|\n");
        for (Map.Entry<String, List<Double>> e : seconds.entrySet()) {
            if (e.getValue().isEmpty()) {
                md.append("| ").append(e.getKey()).append(" | not run | | | | | |\n");
                continue;
            }
            double best = min(e.getValue());
            StringBuilder all = new StringBuilder();
            for (double s : e.getValue()) {
                all.append(all.length() == 0 ? "" : ", ").append(String.format(Locale.ROOT, "%.1f", s));
            }
            double ratio = readBest / best;
            String target = e.getKey().equals("linear") ? ">= 0.5" : e.getKey().equals("ties") ? ">= 0.25" : "";
            double want = e.getKey().equals("linear") ? LINEAR_TARGET : TIES_TARGET;
            String commit = "";
            String without = "";
            List<Double> c = commits.get(e.getKey());
            if (c != null && c.size() == e.getValue().size()) {
                int at = e.getValue().indexOf(best);
                commit = String.format(Locale.ROOT, "%.1f", c.get(at));
                without = String.format(Locale.ROOT, "%.3f", readBest / (best - c.get(at)));
            }
            md.append(String.format(Locale.ROOT, "| %s | %s | %.1f | %.3f | %.3f | %s | %s | %s | %s |%n",
                    e.getKey(), all, best, input / 1e9 / best, ratio, target, e.getKey().equals("read") ? ""
                            : ratio >= want ? "yes" : "**no**", commit, without));
        }
        md.append("\n");
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(BenchSupport.machine()).append(". Shared with other engineers' builds and"
                + " tests (load average ").append(Machine.loadAverage()).append(" when the page was written);"
                + " every row ran under the same sharing, which is why the ratios, not the absolute GB/s, are the"
                + " numbers to read. Written ").append(Instant.now()).append(".\n");
        Machine.writePage(out, md.toString());
    }
}
