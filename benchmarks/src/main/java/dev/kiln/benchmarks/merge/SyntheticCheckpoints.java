package dev.kiln.benchmarks.merge;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.TensorSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Writes seeded, LLM-shaped float32 checkpoints for the merge memory and speed benchmarks: a base and fine-tunes that
 * differ from it by small seeded task vectors, with the tensor shapes of a Llama-style decoder (hidden 2048, MLP
 * 8192, vocabulary 32000, so the embedding and head are 65.5M elements each).
 *
 * <p>Every tensor is drawn on its own sub-manager and written as soon as it exists, with the three files written side
 * by side, so the generator holds only one tensor name's arrays at a time (a few hundred MB) however large the files.
 * Each tensor's generator is seeded from the seed and the tensor's index, so files are identical on every run.
 *
 * <pre>
 * java -Dai.djl.offline=true -cp CLASSPATH dev.kiln.benchmarks.merge.SyntheticCheckpoints [--dir /tmp/kiln-merge-bench]
 *     [--layers 4] [--models 2] [--seed 7]
 * </pre>
 */
public final class SyntheticCheckpoints {
    static final int HIDDEN = 2048;
    static final int MLP = 8192;
    static final int VOCAB = 32000;

    private SyntheticCheckpoints() {
    }

    public static void main(String[] args) {
        Map<String, String> options = BenchSupport.parse(args);
        Path dir = Path.of(options.getOrDefault("dir", "/tmp/kiln-merge-bench"));
        int layers = Integer.parseInt(options.getOrDefault("layers", "4"));
        int models = Integer.parseInt(options.getOrDefault("models", "2"));
        long seed = Long.parseLong(options.getOrDefault("seed", "7"));
        List<Path> files = ensure(dir, layers, models, seed);
        for (Path f : files) {
            System.out.println(f);
        }
    }

    /** The tensors of a decoder with {@code layers} blocks, in checkpoint order. */
    static List<TensorSpec> specs(int layers) {
        List<TensorSpec> specs = new ArrayList<>();
        specs.add(new TensorSpec("model.embed_tokens.weight", DType.F32, new long[] {VOCAB, HIDDEN}));
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".";
            specs.add(new TensorSpec(p + "input_layernorm.weight", DType.F32, new long[] {HIDDEN}));
            for (String proj : List.of("q_proj", "k_proj", "v_proj", "o_proj")) {
                specs.add(new TensorSpec(p + "self_attn." + proj + ".weight", DType.F32, new long[] {HIDDEN, HIDDEN}));
            }
            specs.add(new TensorSpec(p + "post_attention_layernorm.weight", DType.F32, new long[] {HIDDEN}));
            specs.add(new TensorSpec(p + "mlp.gate_proj.weight", DType.F32, new long[] {MLP, HIDDEN}));
            specs.add(new TensorSpec(p + "mlp.up_proj.weight", DType.F32, new long[] {MLP, HIDDEN}));
            specs.add(new TensorSpec(p + "mlp.down_proj.weight", DType.F32, new long[] {HIDDEN, MLP}));
        }
        specs.add(new TensorSpec("model.norm.weight", DType.F32, new long[] {HIDDEN}));
        specs.add(new TensorSpec("lm_head.weight", DType.F32, new long[] {VOCAB, HIDDEN}));
        return specs;
    }

    /** The base file followed by the fine-tunes, generated unless files with the expected tensors are there. */
    static List<Path> ensure(Path dir, int layers, int models, long seed) {
        List<Path> files = new ArrayList<>();
        files.add(dir.resolve("base.safetensors"));
        for (int m = 1; m <= models; m++) {
            files.add(dir.resolve("finetune-" + m + ".safetensors"));
        }
        List<TensorSpec> specs = specs(layers);
        if (files.stream().allMatch(f -> complete(f, specs))) {
            return files;
        }
        try {
            Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        long started = System.nanoTime();
        List<SafetensorsWriter> writers = new ArrayList<>();
        try {
            for (Path f : files) {
                writers.add(SafetensorsWriter.create(f, Map.of("format", "pt", "kiln.synthetic.seed",
                        Long.toString(seed)), specs));
            }
            for (int t = 0; t < specs.size(); t++) {
                TensorSpec spec = specs.get(t);
                Shape shape = new Shape(spec.shape());
                try (NDManager manager = NDManager.newBaseManager()) {
                    Engine.getInstance().setRandomSeed((int) (seed * 1_000_003L + t));
                    boolean norm = shape.dimension() == 1;
                    // Norm weights sit near 1, matrices near 0 with an init-like spread.
                    NDArray base = norm ? manager.randomNormal(1f, 0.05f, shape, DataType.FLOAT32)
                            : manager.randomNormal(0f, 0.02f, shape, DataType.FLOAT32);
                    writers.get(0).write(spec.name(), base);
                    for (int m = 1; m <= models; m++) {
                        // Fine-tuning deltas are about a tenth of the weights' spread, as in SFT checkpoints.
                        try (NDArray delta = manager.randomNormal(0f, 0.002f, shape, DataType.FLOAT32);
                             NDArray tuned = base.add(delta)) {
                            writers.get(m).write(spec.name(), tuned);
                        }
                    }
                }
            }
            for (SafetensorsWriter w : writers) {
                w.commit();
            }
        } finally {
            for (SafetensorsWriter w : writers) {
                w.close();
            }
        }
        System.out.printf(java.util.Locale.ROOT, "generated %d checkpoints of %s in %.1f s (generator peak RSS %s)%n",
                files.size(), BenchSupport.gib(bytes(specs)), (System.nanoTime() - started) / 1e9,
                BenchSupport.mib(BenchSupport.peakRss()));
        return files;
    }

    static long bytes(List<TensorSpec> specs) {
        return specs.stream().mapToLong(TensorSpec::byteLength).sum();
    }

    private static boolean complete(Path file, List<TensorSpec> specs) {
        if (!Files.isRegularFile(file)) {
            return false;
        }
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            return r.names().equals(specs.stream().map(TensorSpec::name).toList());
        } catch (RuntimeException e) {
            return false;
        }
    }
}
