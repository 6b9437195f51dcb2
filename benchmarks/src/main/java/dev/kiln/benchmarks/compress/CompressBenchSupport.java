package dev.kiln.benchmarks.compress;

import dev.kiln.benchmarks.Machine;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.compress.CompressPipeline;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.compress.Compressor;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Helpers shared by the compression benchmark runners: arguments, the settings grid, one compression, the page. */
final class CompressBenchSupport {

    private CompressBenchSupport() {
    }

    /** One compressor setting of the grid. */
    record Setting(String id, Map<String, String> params) {
        String label() {
            StringBuilder s = new StringBuilder(id);
            params.forEach((k, v) -> s.append(' ').append(k).append('=').append(v));
            return s.toString();
        }

        String tag() {
            return label().replace(' ', '_').replace('=', '-');
        }
    }

    /**
     * The grid of issue 6, two or three settings per compressor: magnitude 50/80/90%, N:M 2:4, 1:4 and 4:8,
     * structured 25/50/75%, low-rank energy 0.9/0.99 and rank 32, int8 (it has no setting to vary), LR+S at energy
     * 0.9 with 10% of the residual and at energy 0.99 with 5%.
     */
    static final List<Setting> GRID = List.of(
            new Setting("magnitude", Map.of("sparsity", "0.5")),
            new Setting("magnitude", Map.of("sparsity", "0.8")),
            new Setting("magnitude", Map.of("sparsity", "0.9")),
            new Setting("nm", ordered("n", "2", "m", "4")),
            new Setting("nm", ordered("n", "1", "m", "4")),
            new Setting("nm", ordered("n", "4", "m", "8")),
            new Setting("structured", Map.of("sparsity", "0.25")),
            new Setting("structured", Map.of("sparsity", "0.5")),
            new Setting("structured", Map.of("sparsity", "0.75")),
            new Setting("low-rank", Map.of("energy", "0.9")),
            new Setting("low-rank", Map.of("energy", "0.99")),
            new Setting("low-rank", Map.of("rank", "32")),
            new Setting("int8", Map.of()),
            new Setting("low-rank-sparse", ordered("energy", "0.9", "residual-density", "0.1")),
            new Setting("low-rank-sparse", ordered("energy", "0.99", "residual-density", "0.05")));

    private static Map<String, String> ordered(String... kv) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put(kv[i], kv[i + 1]);
        }
        return m;
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

    /** Compresses {@code in} into {@code out} through the real pipeline, the compressor created by the registry. */
    static CompressPipeline.Report compress(Registry registry, Setting s, Path in, Path out, NDManager manager) {
        Compressor created = registry.create(Kind.COMPRESS, Compressor.class, s.id(), s.params());
        Compressor c = created;
        if (s.id().equals("nm")) {
            // 'nm' refuses tensors whose input length is not a multiple of m (a 5x5 single-channel first conv has
            // 25); like NVIDIA's 2:4 recipe, those layers stay dense instead of failing the whole checkpoint.
            long m = Long.parseLong(s.params().getOrDefault("m", "4"));
            c = new Compressor() {
                @Override
                public boolean appliesTo(String name, ai.djl.ndarray.types.Shape shape) {
                    return created.appliesTo(name, shape) && (shape.size() / shape.get(0)) % m == 0;
                }

                @Override
                public dev.kiln.spi.compress.CompressedTensor compress(String name, ai.djl.ndarray.NDArray w) {
                    return created.compress(name, w);
                }
            };
        }
        long rank = Long.parseLong(s.params().getOrDefault("rank", "0"));
        if (s.id().equals("low-rank") && rank > 0) {
            // A fixed rank is refused for a tensor whose matrix has a side at most that long (a small first conv);
            // such tensors are already as thin as the rank, so they are copied dense instead.
            Compressor inner = c;
            c = new Compressor() {
                @Override
                public boolean appliesTo(String name, ai.djl.ndarray.types.Shape shape) {
                    return inner.appliesTo(name, shape) && Math.min(shape.get(0), shape.size() / shape.get(0)) > rank;
                }

                @Override
                public dev.kiln.spi.compress.CompressedTensor compress(String name, ai.djl.ndarray.NDArray w) {
                    return inner.compress(name, w);
                }
            };
        }
        return new CompressPipeline(s.id(), new LinkedHashMap<>(s.params()), c).run(in, out, manager,
                Map.of("kiln.bench", "compress"));
    }

    /** The unweighted mean over compressed tensors of ||W - W_hat|| / ||W|| (each tensor counts once). */
    static double meanRelativeError(CompressPipeline.Report r) {
        return r.tensors().stream().mapToDouble(CompressPipeline.TensorReport::relativeError).average()
                .orElse(Double.NaN);
    }

    /** Non-zero fraction over all compressed tensors' reconstructions, weighted by their element counts. */
    static double density(CompressPipeline.Report r) {
        double nonZero = 0;
        double total = 0;
        for (CompressPipeline.TensorReport t : r.tensors()) {
            long n = t.shape().stream().mapToLong(Long::longValue).reduce(1, (a, b) -> a * b);
            nonZero += t.density() * n;
            total += n;
        }
        return total == 0 ? Double.NaN : nonZero / total;
    }

    static String kib(long bytes) {
        return String.format(Locale.ROOT, "%.1f", bytes / 1024.0);
    }



    /** The machine in one line, with the note that it was shared (speed numbers are noisy because of it). */
    static String machine() {
        return String.format(Locale.ROOT, "%s, %d vCPU, no GPU; Java %s, DJL 0.36.0 with CPU libtorch 2.7.1, 1"
                + " intra-op thread. The 2 cores were shared with other engineers' builds and long benchmarks"
                + " (load average %s when this page was written), so absolute speeds are noisy; speedups compare"
                + " variants measured in the same process, interleaved round by round", Machine.cpuModel(),
                Runtime.getRuntime().availableProcessors(), System.getProperty("java.version"), Machine.loadAverage());
    }

}
