package dev.kiln.benchmarks.lm;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.core.data.AustenCorpus;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.lm.Decoding;
import dev.kiln.core.lm.TimedGeneration;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.lm.train.LmTrainer;
import dev.kiln.core.lm.train.LmTrainingConfig;
import dev.kiln.core.lm.train.LmTrainingResult;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.skip.SkipPolicy;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Trains the byte-level decoder on five Austen novels (Persuasion held out), with or without layer dropout, then
 * measures every skip policy on the trained model: validation perplexity (teacher-forced through the cached decode
 * path, so each policy makes its generation-time decisions) and prefill / decode speed at batch 1 and 8 with the KV
 * cache, the no-skip baseline through the same code path and in the same rounds (policies interleaved per repeat,
 * medians reported).
 *
 * <p>Usage: {@code java -cp <classpath> dev.kiln.benchmarks.lm.LmSkipBenchmark train|eval <variant> [key=value...]}
 * with variant {@code base}, {@code layerdrop} or {@code layerskip} (layer dropout plus the early-exit loss). Keys: {@code rdb} (default data/full/austen/Rdata.rdb),
 * {@code out} (default /tmp/lmbench), {@code steps} (1500), {@code dim} (128), {@code layers} (8), {@code heads}
 * (4), {@code batch} (16), {@code seq} (128), {@code lr} (2e-3), {@code rate} (layer-dropout rate, 0.2),
 * {@code threads} (intra-op threads, 1), {@code valWindows} (64), {@code prompt} (64), {@code newTokens} (64),
 * {@code repeats} (7), {@code warmup} (2), {@code seed} (42).
 */
public final class LmSkipBenchmark {
    private LmSkipBenchmark() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 2) {
            System.err.println("usage: LmSkipBenchmark train|eval base|layerdrop|layerskip [key=value...]");
            System.exit(2);
        }
        String mode = args[0];
        String variant = args[1];
        Map<String, String> o = new LinkedHashMap<>();
        for (int i = 2; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            o.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Path out = Path.of(o.getOrDefault("out", "/tmp/lmbench"));
        Files.createDirectories(out);
        int threads = Integer.parseInt(o.getOrDefault("threads", "1"));
        Engine.getInstance().setRandomSeed(Integer.parseInt(o.getOrDefault("seed", "42")));
        JniUtils.setNumThreads(threads);
        JniUtils.setNumInteropThreads(1);

        AustenCorpus corpus = AustenCorpus.read(Path.of(o.getOrDefault("rdb", "data/full/austen/Rdata.rdb")));
        List<String> trainTitles = new ArrayList<>(AustenCorpus.TITLES);
        trainTitles.remove("Persuasion");
        byte[] train = corpus.bytes(trainTitles);
        byte[] validation = corpus.bytes(List.of("Persuasion"));
        Registry registry = Registry.discover(LmSkipBenchmark.class.getClassLoader());
        Path checkpoint = out.resolve(variant + ".safetensors");
        int seq = Integer.parseInt(o.getOrDefault("seq", "128"));
        int valWindows = Integer.parseInt(o.getOrDefault("valWindows", "64"));

        try (NDManager manager = NDManager.newBaseManager()) {
            if (mode.equals("train")) {
                DecoderConfig config = new DecoderConfig(Integer.parseInt(o.getOrDefault("layers", "8")),
                        Integer.parseInt(o.getOrDefault("dim", "128")), Integer.parseInt(o.getOrDefault("heads", "4")),
                        4, 256, true);
                int steps = Integer.parseInt(o.getOrDefault("steps", "1500"));
                long seed = Long.parseLong(o.getOrDefault("seed", "42"));
                double lr = Double.parseDouble(o.getOrDefault("lr", "2e-3"));
                LmTrainingConfig tc = new LmTrainingConfig(steps, Integer.parseInt(o.getOrDefault("batch", "16")),
                        seq, lr, lr / 10, Math.max(1, steps / 20), 0.1, 1.0, seed, 50);
                SkipPolicy drop = switch (variant) {
                    case "base" -> null;
                    case "layerdrop" -> registry.create(Kind.SKIP, SkipPolicy.class, "layerdrop",
                            Map.of("rate", o.getOrDefault("rate", "0.2")));
                    // LayerSkip's recipe (torchtune): dropout plus early-exit loss, e_scale 1, linear scales, gradual
                    // curriculum over half the run
                    case "layerskip" -> registry.create(Kind.SKIP, SkipPolicy.class, "layerdrop",
                            Map.of("rate", o.getOrDefault("rate", "0.2"), "early-exit-scale", "1",
                                    "early-exit-scale-fn", "linear", "early-exit-curriculum", "gradual",
                                    "early-exit-ramp", Integer.toString(steps / 2)));
                    default -> throw new IllegalArgumentException("variant must be base, layerdrop or layerskip: "
                            + variant);
                };
                System.out.printf(Locale.ROOT, "train %s: %s, %d train bytes, %d validation bytes, %s, threads %d%n",
                        variant, config, train.length, validation.length, tc, threads);
                try (DecoderLm model = new DecoderLm(config, manager, seed)) {
                    // the model's N(0, 1) embedding, tied to the head, starts with logits of std ~sqrt(dim) and a
                    // loss near 40 nats; GPT-style small embeddings (std 0.1) start near ln 256 instead
                    model.weights().get("embed.weight").muli(0.1f);
                    model.weights().get("pos.weight").muli(0.2f);
                    model.refreshDerived();
                    LmTrainingResult r = LmTrainer.train(model, train, tc, drop, System.out::println);
                    double ppl = LmTrainer.perplexity(model, validation, seq, valWindows, 16);
                    Map<String, String> meta = new LinkedHashMap<>();
                    meta.put("kiln.train.steps", Integer.toString(steps));
                    meta.put("kiln.train.variant", variant);
                    meta.put("kiln.train.seconds", String.format(Locale.ROOT, "%.1f", r.seconds()));
                    LmCheckpoint.save(model, checkpoint, meta);
                    String line = String.format(Locale.ROOT,
                            "variant=%s steps=%d seconds=%.1f final_loss_last50=%.4f val_ppl_full=%.4f "
                                    + "layers_run_fraction=%.3f skipped_nonfinite_steps=%d config=%s train=%s%n",
                            variant, steps, r.seconds(), r.tailLoss(50), ppl,
                            r.layersRun() / (double) ((long) steps * config.layers()), r.skippedSteps(), config, tc);
                    System.out.print(line);
                    Files.writeString(out.resolve(variant + "-train.txt"), line, StandardCharsets.UTF_8);
                }
            } else {
                eval(o, out, variant, checkpoint, registry, validation, seq, valWindows, manager);
            }
        }
    }

    private static void eval(Map<String, String> o, Path out, String variant, Path checkpoint, Registry registry,
            byte[] validation, int seq, int valWindows, NDManager manager) throws IOException {
        int promptLen = Integer.parseInt(o.getOrDefault("prompt", "64"));
        int newTokens = Integer.parseInt(o.getOrDefault("newTokens", "64"));
        int repeats = Integer.parseInt(o.getOrDefault("repeats", "7"));
        int warmup = Integer.parseInt(o.getOrDefault("warmup", "2"));
        Map<String, Supplier<SkipPolicy>> policies = new LinkedHashMap<>();
        policies.put("none", () -> null);
        policies.put("unified speedup=2", () -> registry.create(Kind.SKIP, SkipPolicy.class, "unified",
                Map.of("speedup", "2")));
        policies.put("contiguous drop=0.5 top", () -> registry.create(Kind.SKIP, SkipPolicy.class, "contiguous",
                Map.of("drop", "0.5", "where", "top")));
        // depth falls linearly 8 -> 2 over positions 0..128: 5..3 layers (4 on average, the 2x target) while
        // decoding positions 64..127
        policies.put("skipdecode 8->2 by 128", () -> registry.create(Kind.SKIP, SkipPolicy.class, "skipdecode",
                Map.of("min-depth", "2", "max-position", "128")));
        policies.put("ffn-skip 0.95", () -> registry.create(Kind.SKIP, SkipPolicy.class, "ffn-skip",
                Map.of("threshold", "0.95")));
        StringBuilder report = new StringBuilder();
        try (DecoderLm model = LmCheckpoint.load(checkpoint, manager)) {
            Map<String, Double> ppl = new LinkedHashMap<>();
            for (Map.Entry<String, Supplier<SkipPolicy>> p : policies.entrySet()) {
                long t0 = System.nanoTime();
                ppl.put(p.getKey(), LmTrainer.policyPerplexity(model, validation, seq, valWindows, 32,
                        p.getValue().get(), 7));
                System.out.printf(Locale.ROOT, "ppl %-26s %.4f (%.1fs)%n", p.getKey(), ppl.get(p.getKey()),
                        (System.nanoTime() - t0) / 1e9);
            }
            double parallel = LmTrainer.perplexity(model, validation, seq, valWindows, 16);
            report.append(String.format(Locale.ROOT, "variant %s, checkpoint %s, validation: first %d windows of "
                    + "%d bytes of Persuasion; full-model parallel perplexity %.4f%n", variant, checkpoint,
                    valWindows, seq, parallel));
            report.append(String.format(Locale.ROOT, "prompt %d bytes, %d new tokens, greedy, KV cache, %d warm-up "
                    + "+ %d timed repeats per policy, policies interleaved per repeat, medians%n%n", promptLen,
                    newTokens, warmup, repeats));
            report.append("| policy | val ppl | decode layers / FFNs run (of " + model.config().layers()
                    + ") | b1 prefill ms | b1 decode tok/s | b1 speedup | b8 prefill ms "
                    + "| b8 decode tok/s | b8 speedup |\n|---|---|---|---|---|---|---|---|---|\n");
            Map<String, String> work = new LinkedHashMap<>();
            Map<String, double[]> results = new LinkedHashMap<>();
            for (int batch : new int[] {1, 8}) {
                int[][] prompts = new int[batch][promptLen];
                for (int b = 0; b < batch; b++) {
                    for (int i = 0; i < promptLen; i++) {
                        prompts[b][i] = validation[5000 + b * 997 + i] & 0xFF;
                    }
                }
                Map<String, List<Double>> prefill = new LinkedHashMap<>();
                Map<String, List<Double>> decode = new LinkedHashMap<>();
                for (int r = 0; r < warmup + repeats; r++) {
                    for (Map.Entry<String, Supplier<SkipPolicy>> p : policies.entrySet()) {
                        TimedGeneration g = model.generateTimed(prompts, newTokens, Decoding.greedy(1),
                                p.getValue().get(), true);
                        if (r == 0 && batch == 1) {
                            work.put(p.getKey(), decodeWork(g.generation(), promptLen));
                        }
                        if (r >= warmup) {
                            prefill.computeIfAbsent(p.getKey(), k -> new ArrayList<>()).add(g.prefillNanos() / 1e6);
                            decode.computeIfAbsent(p.getKey(), k -> new ArrayList<>())
                                    .add(batch * (newTokens - 1) / (g.decodeNanos() / 1e9));
                        }
                    }
                }
                for (String name : policies.keySet()) {
                    double[] row = results.computeIfAbsent(name, k -> new double[6]);
                    int at = batch == 1 ? 0 : 3;
                    row[at] = median(prefill.get(name));
                    row[at + 1] = median(decode.get(name));
                    row[at + 2] = row[at + 1] / median(decode.get("none"));
                    System.out.printf(Locale.ROOT, "b%d %-26s prefill %.1f ms decode %.1f tok/s (x%.2f) all %s%n",
                            batch, name, row[at], row[at + 1], row[at + 2], decode.get(name));
                }
            }
            for (Map.Entry<String, double[]> e : results.entrySet()) {
                double[] r = e.getValue();
                report.append(String.format(Locale.ROOT, "| %s | %.3f | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |%n",
                        e.getKey(), ppl.get(e.getKey()), work.get(e.getKey()), r[0], r[1], r[2], r[3], r[4], r[5]));
            }
        }
        System.out.print(report);
        Files.writeString(out.resolve(variant + "-eval.md"), report.toString(), StandardCharsets.UTF_8);
    }

    /** Mean blocks and FFNs run per decode position (the target work), from the generation's recorded decisions. */
    private static String decodeWork(dev.kiln.core.lm.Generation g, int promptLen) {
        double layers = 0;
        double ffns = 0;
        int n = 0;
        for (int p = promptLen; p < g.layerRan().length; p++) {
            for (int l = 0; l < g.layerRan()[p].length; l++) {
                layers += g.layerRan()[p][l] ? 1 : 0;
                ffns += g.layerRan()[p][l] && g.ffnRan()[p][l] ? 1 : 0;
            }
            n++;
        }
        return String.format(Locale.ROOT, "%.2f / %.2f", layers / n, ffns / n);
    }

    private static double median(List<Double> values) {
        double[] v = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }
}
