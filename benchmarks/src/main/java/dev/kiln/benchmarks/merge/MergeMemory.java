package dev.kiln.benchmarks.merge;

import dev.kiln.benchmarks.Machine;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.WorkerLauncher;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Peak memory of merging three ~1.6 GB LLM-shaped checkpoints with a 512 MB Java heap: each merge (linear over the
 * three files; ties over the base and two fine-tunes) runs in a child JVM ({@link MergeChild}) started with
 * {@code -Xmx512m}, which reports its own peak resident set size (VmHWM). Writes a Markdown page and deletes the
 * checkpoints at the end unless {@code --keep true}.
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.merge.MergeMemory [--dir /tmp/kiln-merge-bench]
 *     [--threads 2,1] [--methods linear,ties] [--out docs/results/merge-memory.md] [--keep false] [--command "..."]
 * </pre>
 */
public final class MergeMemory {
    /** The target from issue 4. */
    static final long TARGET = 1536L << 20;

    private MergeMemory() {
    }

    record Row(String method, int threads, String direct, JsonNode result, String note) {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = BenchSupport.parse(args);
        Path dir = Path.of(options.getOrDefault("dir", "/tmp/kiln-merge-bench"));
        Path out = Path.of(options.getOrDefault("out", "docs/results/merge-memory.md"));
        // threads:direct-memory-limit pairs; "default" leaves the JVM's limit (the heap's -Xmx).
        List<String> configs = List.of(options.getOrDefault("configs", "2:default,2:3g,1:3g").split(","));
        List<String> methods = List.of(options.getOrDefault("methods", "linear,ties").split(","));
        String heap = options.getOrDefault("xmx", "512m");
        List<Path> files = SyntheticCheckpoints.ensure(dir, 4, 2, 7);
        long fileBytes = Files.size(files.get(0));
        List<Row> rows = new ArrayList<>();
        try {
            for (String config : configs) {
                int threads = Integer.parseInt(config.split(":")[0]);
                String direct = config.split(":")[1];
                for (String method : methods) {
                    Row row = runChild(method, threads, direct, heap, files, dir);
                    rows.add(row);
                    System.out.println(method + " threads=" + threads + ": " + row.result() + " " + row.note());
                    write(out, options.getOrDefault("command", "(not given)"), heap, fileBytes, rows);
                }
            }
        } finally {
            if (!Boolean.parseBoolean(options.getOrDefault("keep", "false"))) {
                for (Path f : files) {
                    Files.deleteIfExists(f);
                }
            }
        }
    }

    private static Row runChild(String method, int threads, String direct, String heap, List<Path> files, Path dir)
            throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
                .toString(), "-Xmx" + heap));
        if (!direct.equals("default")) {
            command.add("-XX:MaxDirectMemorySize=" + direct);
        }
        // "ties-model" is ties with trim-scope=model: one magnitude threshold per model over all its tensors.
        boolean wholeModel = method.equals("ties-model");
        command.addAll(List.of("-Dai.djl.offline=true", "-cp", System.getProperty("java.class.path"),
                MergeChild.class.getName(), "--method", wholeModel ? "ties" : method, "--threads",
                Integer.toString(threads),
                "--out", dir.resolve("merged-" + method + ".safetensors").toString()));
        if (method.equals("linear")) {
            command.addAll(List.of("--models", files.get(0) + "," + files.get(1) + "," + files.get(2)));
        } else {
            command.addAll(List.of("--params", wholeModel ? "density=0.2,trim-scope=model" : "density=0.2", "--base", files.get(0).toString(), "--models",
                    files.get(1) + "," + files.get(2)));
        }
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        // The malloc settings kiln:merge's worker JVM runs with (unless the environment sets its own).
        builder.environment().putIfAbsent("GLIBC_TUNABLES", WorkerLauncher.MALLOC_TUNABLES);
        Process process = builder.start();
        JsonNode result = null;
        String firstError = null;
        StringBuilder tail = new StringBuilder();
        try (BufferedReader reader = new BufferedReader(new InputStreamReader(process.getInputStream(),
                StandardCharsets.UTF_8))) {
            for (String line; (line = reader.readLine()) != null; ) {
                if (line.startsWith("RESULT ")) {
                    result = Json.MAPPER.readTree(line.substring(7));
                } else {
                    if (firstError == null && (line.contains("Exception") || line.contains("Error"))
                            && !line.contains("WARN")) {
                        firstError = line.strip();
                    }
                    tail.append(line).append('\n');
                    if (tail.length() > 4000) {
                        tail.delete(0, tail.length() - 4000);
                    }
                }
            }
        }
        int exit = process.waitFor();
        if (result == null) {
            String last = firstError != null ? firstError : tail.toString().strip();
            if (last.length() > 400) {
                last = last.substring(last.length() - 400);
            }
            return new Row(method, threads, direct, null, "failed (exit " + exit + "): `"
                    + last.replace('\n', ' ').replace("|", "/") + "`");
        }
        return new Row(method, threads, direct, result, "");
    }

    private static void write(Path out, String command, String heap, long fileBytes, List<Row> rows) {
        StringBuilder md = new StringBuilder();
        md.append("# Merge memory: three ~1.6 GB checkpoints with a 512 MB Java heap\n\n");
        md.append(String.format(Locale.ROOT, "Three seeded synthetic Llama-shaped float32 checkpoints of %s each"
                + " (`SyntheticCheckpoints`: embedding and lm_head 32000x2048 = 65.5M elements, 4 blocks of"
                + " q/k/v/o 2048x2048, gate/up 8192x2048, down 2048x8192, RMSNorm vectors; 39 tensors; fine-tunes ="
                + " base + N(0, 0.002) task vectors). Each merge runs through `MergePipeline` in a child JVM started"
                + " with `-Xmx%s`; the child reads its own peak resident set size (`VmHWM` in /proc/self/status)"
                + " after the merge, so the number covers heap, direct buffers and libtorch's native memory together."
                + " linear merges the three files (no base); ties merges the two fine-tunes onto the base with"
                + " density 0.2 (the TIES paper's top-20%%). Both read %s of input and write one %s file.%n%n",
                BenchSupport.gib(fileBytes), heap, BenchSupport.gib(3 * fileBytes), BenchSupport.gib(fileBytes)));
        md.append("Target (issue 4): peak RSS below 1.5 GiB.\n\n");
        md.append("| method | merge threads | -XX:MaxDirectMemorySize | peak RSS | below 1.5 GiB | RSS before merge"
                + " | peak heap | seconds | note |\n");
        md.append("|---|---:|---|---:|---|---:|---:|---:|---|\n");
        for (Row r : rows) {
            if (r.result() == null) {
                md.append(String.format(Locale.ROOT, "| %s | %d | %s | | | | | | %s |%n", r.method(), r.threads(),
                        r.direct().equals("default") ? "default (= -Xmx)" : r.direct(), r.note()));
                continue;
            }
            long rss = r.result().get("peakRssBytes").asLong();
            md.append(String.format(Locale.ROOT, "| %s | %d | %s | %s | %s | %s | %s | %.1f | %s |%n", r.method(),
                    r.threads(), r.direct().equals("default") ? "default (= -Xmx)" : r.direct(), BenchSupport.mib(rss), rss > 0 && rss < TARGET ? "yes" : "**no**",
                    BenchSupport.mib(r.result().get("rssBeforeMergeBytes").asLong()),
                    BenchSupport.mib(r.result().get("peakHeapBytes").asLong()),
                    r.result().get("seconds").asDouble(), r.note()));
        }
        md.append("\n");
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(BenchSupport.machine()).append(". Shared with other engineers' builds (load "
                + "average ").append(Machine.loadAverage()).append(" when the page was written), so seconds are"
                + " indicative only; memory is not affected by the sharing. Written ").append(Instant.now())
                .append(".\n");
        Machine.writePage(out, md.toString());
    }
}
