package dev.kiln.benchmarks.compress;

import dev.kiln.benchmarks.Machine;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.core.data.AustenCorpus;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.lm.Decoding;
import dev.kiln.core.lm.TimedGeneration;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.lm.train.LmTrainer;
import dev.kiln.spi.Registry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Compression of the byte-level decoder LM's weights (issue 6): the LM checkpoint is compressed with every setting
 * of {@link CompressBenchSupport#GRID} through {@link CompressPipeline} (every 2-D weight tensor the pipeline deems
 * compressible: embeddings, attention and FFN matrices; biases and layer norms are copied), each is loaded into a
 * {@link DecoderLm} by {@link LmCheckpoint#load} (cheap low-rank linears run factored), and each variant's greedy
 * decode speed (KV cache, batch 1) is measured against the original in the same process, interleaved round by round.
 * With a trained checkpoint and the Austen corpus, validation perplexity on Persuasion is measured too; otherwise a
 * randomly initialised LM gives size and speed only.
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.compress.CompressLm [--checkpoint FILE]
 *     [--rdb data/full/austen/Rdata.rdb] [--val-windows 32] [--prompt 64] [--new-tokens 32] [--repeats 15]
 *     [--warmup 1] [--work /tmp/kiln-compress-lm] [--out docs/results/compress-lm.md] [--command "..."]
 * </pre>
 * Without {@code --checkpoint}, {@code /tmp/lmbench/base.safetensors} and then {@code layerdrop.safetensors} are
 * tried (written by {@code LmSkipBenchmark}).
 */
public final class CompressLm {

    private CompressLm() {
    }

    /** One measured variant; perplexity NaN when not measured. */
    record Row(String label, CompressPipeline.Report report, double perplexity, List<Double> tokensPerSecond,
            List<Double> prefillPerSecond, String loadedAs) {
    }

    public static void main(String[] args) throws IOException {
        Map<String, String> o = CompressBenchSupport.parse(args);
        Path work = Path.of(o.getOrDefault("work", "/tmp/kiln-compress-lm"));
        Path out = Path.of(o.getOrDefault("out", "docs/results/compress-lm.md"));
        String command = o.getOrDefault("command", "(not given)");
        Path rdb = Path.of(o.getOrDefault("rdb", "data/full/austen/Rdata.rdb"));
        int valWindows = Integer.parseInt(o.getOrDefault("val-windows", "32"));
        int promptLength = Integer.parseInt(o.getOrDefault("prompt", "64"));
        int newTokens = Integer.parseInt(o.getOrDefault("new-tokens", "32"));
        int repeats = Integer.parseInt(o.getOrDefault("repeats", "15"));
        int warmup = Integer.parseInt(o.getOrDefault("warmup", "1"));
        Files.createDirectories(work);
        Engine.getInstance();
        JniUtils.setNumThreads(1);
        JniUtils.setNumInteropThreads(1);

        Path source = o.containsKey("checkpoint") ? Path.of(o.get("checkpoint")) : null;
        if (source == null) {
            for (String candidate : List.of("/tmp/lmbench/base.safetensors", "/tmp/lmbench/layerdrop.safetensors")) {
                if (Files.isRegularFile(Path.of(candidate))) {
                    source = Path.of(candidate);
                    break;
                }
            }
        }
        Path original = work.resolve("lm.safetensors");
        String provenance;
        boolean trained = source != null;
        try (NDManager manager = NDManager.newBaseManager()) {
            if (trained) {
                // A private copy: the other engineer's runner may rewrite its file while we read it.
                Files.copy(source, original, StandardCopyOption.REPLACE_EXISTING);
                provenance = "trained checkpoint `" + source + "` (" + LmCheckpoint.config(original) + ")";
                Path trainLog = source.resolveSibling(source.getFileName().toString().replace(".safetensors",
                        "-train.txt"));
                if (Files.isRegularFile(trainLog)) {
                    provenance += "; its training log: `" + Files.readString(trainLog).trim() + "`";
                }
            } else {
                DecoderConfig config = new DecoderConfig(8, 128, 4, 4, 256, true);
                try (DecoderLm model = new DecoderLm(config, manager, 42)) {
                    LmCheckpoint.save(model, original, Map.of("kiln.train.variant", "random-init"));
                }
                provenance = "**randomly initialised** LM (" + config + "); no trained checkpoint was found, so"
                        + " this page measures size, weight error and speed only";
            }
        }
        byte[] validation = null;
        if (trained && Files.isRegularFile(rdb)) {
            validation = AustenCorpus.read(rdb).bytes(List.of("Persuasion"));
        }

        Registry registry = Registry.discover(CompressLm.class.getClassLoader());
        List<String> labels = new ArrayList<>();
        List<CompressPipeline.Report> reports = new ArrayList<>();
        List<Path> files = new ArrayList<>();
        labels.add("original");
        reports.add(null);
        files.add(original);
        try (NDManager manager = NDManager.newBaseManager()) {
            for (CompressBenchSupport.Setting s : CompressBenchSupport.GRID) {
                Path file = work.resolve("lm-" + s.tag() + ".safetensors");
                CompressPipeline.Report r = CompressBenchSupport.compress(registry, s, original, file, manager);
                labels.add(s.label());
                reports.add(r);
                files.add(file);
                System.out.printf(Locale.ROOT, "%s: %d -> %d bytes, mean rel error %.4f%n", s.label(),
                        r.fileBytesBefore(), r.fileBytesAfter(), CompressBenchSupport.meanRelativeError(r));
            }
        }

        long started = System.nanoTime();
        List<Row> rows = new ArrayList<>();
        try (NDManager manager = NDManager.newBaseManager()) {
            List<DecoderLm> models = new ArrayList<>();
            for (Path file : files) {
                models.add(loadReconstructed(original, file, manager));
            }
            double[] ppl = new double[models.size()];
            Arrays.fill(ppl, Double.NaN);
            if (validation != null) {
                for (int i = 0; i < models.size(); i++) {
                    ppl[i] = LmTrainer.perplexity(models.get(i), validation, 128, valWindows, 16);
                    System.out.printf(Locale.ROOT, "ppl %s: %.4f%n", labels.get(i), ppl[i]);
                }
            }
            int[][] prompt = new int[1][promptLength];
            byte[] text = validation != null ? validation : "It is a truth universally acknowledged, that a single"
                    .repeat(1 + promptLength / 50).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            for (int i = 0; i < promptLength; i++) {
                prompt[0][i] = text[(validation != null ? 5000 : 0) + i] & 0xFF;
            }
            List<List<Double>> speeds = new ArrayList<>();
            List<List<Double>> prefill = new ArrayList<>();
            models.forEach(m -> speeds.add(new ArrayList<>()));
            models.forEach(m -> prefill.add(new ArrayList<>()));
            for (int r = 0; r < warmup + repeats; r++) {
                // Rotating the start spreads slow spells on the shared machine over all variants.
                for (int k = 0; k < models.size(); k++) {
                    int i = (k + r) % models.size();
                    TimedGeneration g = models.get(i).generateTimed(prompt, newTokens, Decoding.greedy(1), null,
                            true);
                    if (r >= warmup) {
                        speeds.get(i).add((newTokens - 1) / (g.decodeNanos() / 1e9));
                        prefill.get(i).add(promptLength / (g.prefillNanos() / 1e9));
                    }
                }
                System.out.println("speed round " + (r + 1) + "/" + (warmup + repeats) + " done");
            }
            for (int i = 0; i < models.size(); i++) {
                rows.add(new Row(labels.get(i), reports.get(i), ppl[i], speeds.get(i), prefill.get(i),
                        loadedAs(models.get(i))));
            }
            models.forEach(DecoderLm::close);
        }
        write(out, command, provenance, validation != null, valWindows, promptLength, newTokens, warmup, repeats,
                rows, Files.size(original), (System.nanoTime() - started) / 60e9);
    }

    /**
     * A decoder loaded from {@code file} (a plain or compressed copy of {@code original}) the way
     * {@code kiln:benchmark} loads it: dense reconstruction, with cheap low-rank linear layers running as two thin
     * matmuls.
     */
    static DecoderLm loadReconstructed(Path original, Path file, NDManager manager) {
        return LmCheckpoint.load(file, manager);
    }

    /** Which linear layers run factored, e.g. {@code 32 of 32 linears r=8..40}, or {@code dense}. */
    static String loadedAs(DecoderLm model) {
        Map<String, Integer> ranks = model.factoredRanks();
        if (ranks.isEmpty()) {
            return "dense";
        }
        int linears = 4 * model.config().layers();
        int min = ranks.values().stream().mapToInt(Integer::intValue).min().orElseThrow();
        int max = ranks.values().stream().mapToInt(Integer::intValue).max().orElseThrow();
        return ranks.size() + " of " + linears + " linears factored, r=" + (min == max ? "" + min : min + ".." + max);
    }

    static double median(List<Double> values) {
        double[] v = values.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    static void write(Path out, String command, String provenance, boolean perplexity, int valWindows,
            int promptLength, int newTokens, int warmup, int repeats, List<Row> rows, long originalBytes,
            double minutes) {
        StringBuilder md = new StringBuilder();
        md.append("# Compression of the decoder LM's weights\n\n");
        md.append("Model: ").append(provenance).append(".\n\n");
        md.append(String.format(Locale.ROOT, "Each setting compresses the LM checkpoint through `CompressPipeline`"
                + " (the compressor created from the registry): every 2-D weight the pipeline deems compressible"
                + " (token and position embeddings, attention qkv/out, FFN up/down) is compressed, biases and"
                + " layer norms are copied. The checkpoint is then loaded with `LmCheckpoint.load` as"
                + " `kiln:benchmark` loads it: dense float32 reconstruction, except that each attention/FFN linear"
                + " layer stored low-rank at a rank where r (out + in) < out in runs as two thin matmuls (*loaded"
                + " as*). Decode speed: greedy, batch 1, KV cache, a %d-byte prompt and %d new tokens, decode"
                + " tokens/s = %d / decode time, prefill tokens/s = prompt length / prefill time; %d warm-up + %d"
                + " timed rounds,"
                + " every variant once per round with the start rotated, medians. %s%n%n", promptLength, newTokens,
                newTokens - 1, warmup, repeats, perplexity ? String.format(Locale.ROOT, "Perplexity: teacher-forced,"
                        + " the first %d windows of 128 bytes of *Persuasion* (held out from training),"
                        + " `LmTrainer.perplexity`.", valWindows)
                        : "Perplexity: **not measured** (no trained LM or no Austen corpus)."));
        md.append("**Only low-rank rows can be faster.** Every other row runs dense matmuls on the reconstructed"
                + " float32 weights, so its expected speedup is 1.0x and deviations are noise on a shared machine"
                + " (sparser, not faster); magnitude and 2:4 pruning are stored dense, so their files do not shrink"
                + " either. Structured pruning is not loaded narrower for the LM: its rows include the residual"
                + " stream and the tied embedding, which no layer can drop alone.\n\n");
        md.append("Low-rank files can grow: rank-r factors of an m x n weight store r(m + n) numbers, more than the"
                + " m n of the weight once r > m n / (m + n); `low-rank-sparse` adds the residual's values and"
                + " indices on top.\n\n");
        md.append("| compressor | file KiB (before -> after) | file ratio | mean rel. error | density | loaded as |"
                + " val perplexity | decode tok/s (median) | decode speedup | prefill tok/s (median) |"
                + " prefill speedup |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
        double baseSpeed = median(rows.get(0).tokensPerSecond());
        double basePrefill = median(rows.get(0).prefillPerSecond());
        for (Row r : rows) {
            String ppl = Double.isNaN(r.perplexity()) ? "not measured"
                    : String.format(Locale.ROOT, "%.3f", r.perplexity());
            double speed = median(r.tokensPerSecond());
            double pre = median(r.prefillPerSecond());
            if (r.report() == null) {
                md.append(String.format(Locale.ROOT, "| original | %s | 1.00x | 0 | 1.000 | %s | %s | %.1f | 1.00x |"
                        + " %.0f | 1.00x |%n", CompressBenchSupport.kib(originalBytes), r.loadedAs(), ppl, speed,
                        pre));
            } else {
                CompressPipeline.Report rep = r.report();
                md.append(String.format(Locale.ROOT, "| %s | %s -> %s | %.2fx | %.4f | %.3f | %s | %s | %.1f |"
                        + " %.2fx | %.0f | %.2fx |%n", r.label(), CompressBenchSupport.kib(rep.fileBytesBefore()),
                        CompressBenchSupport.kib(rep.fileBytesAfter()),
                        rep.fileBytesBefore() / (double) rep.fileBytesAfter(),
                        CompressBenchSupport.meanRelativeError(rep), CompressBenchSupport.density(rep),
                        r.loadedAs(), ppl, speed, speed / baseSpeed, pre, pre / basePrefill));
            }
        }
        md.append(String.format(Locale.ROOT, "%nMeasuring (perplexity and speed): %.1f minutes.%n%n", minutes));
        md.append("Command: `").append(command).append("`\n\n");
        md.append("Machine: ").append(CompressBenchSupport.machine()).append(". Written ").append(Instant.now())
                .append(".\n");
        Machine.writePage(out, md.toString());
    }
}
