package dev.kiln.core.bench;

import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.TextCorpus;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.lm.Decoding;
import dev.kiln.core.lm.TimedGeneration;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.lm.train.LmTrainer;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.skip.SkipPolicy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.Consumer;

/**
 * Benchmarks a decoder language model under skip policies: validation perplexity (teacher-forced through the cached
 * decoding path, so the policy decides exactly as in generation) and generation speed with the KV cache, prefill and
 * decode timed separately, at the stated batch size and at batch size 1.
 *
 * <p>Honest speedups: every variant runs through the same generation code (the baseline with no policy), variants are
 * interleaved across repeats so background load hits them alike, warm-up passes come first, and medians are reported.
 * The speedup is the baseline's median decode time over the variant's at the stated batch size.
 */
public final class LanguageModelHarness {
    private final Registry registry;
    private final Consumer<String> log;

    /**
     * What to generate.
     *
     * @param promptLength bytes of validation text in each prompt
     * @param newTokens tokens generated per prompt (decode passes)
     * @param perplexityWindows validation windows for perplexity (0: all)
     */
    public record LmSettings(int promptLength, int newTokens, int perplexityWindows) {
        public LmSettings {
            if (promptLength < 1 || newTokens < 1 || perplexityWindows < 0) {
                throw new KilnException("benchmark: promptLength and newTokens must be at least 1 and"
                        + " perplexityWindows at least 0; got " + promptLength + ", " + newTokens + ", "
                        + perplexityWindows);
            }
        }
    }

    public LanguageModelHarness(Registry registry, Consumer<String> log) {
        this.registry = registry;
        this.log = log;
    }

    /** Measures every variant of the language model in {@code checkpoint} on the corpus's validation text. */
    public BenchmarkResult run(Path checkpoint, TextCorpus corpus, List<BenchmarkHarness.Variant> requested,
            BenchmarkHarness.Settings settings, LmSettings lm, NDManager manager) {
        List<BenchmarkHarness.Variant> variants = new ArrayList<>(requested);
        if (variants.stream().noneMatch(BenchmarkHarness.Variant::isPlain)) {
            variants.add(0, BenchmarkHarness.Variant.plain("baseline"));
        }
        BenchmarkHarness.Variant baselineVariant = variants.stream().filter(BenchmarkHarness.Variant::isPlain)
                .findFirst().orElseThrow();
        byte[] text = corpus.validation();
        int batch = settings.batchSize();
        int needed = batch * lm.promptLength() + 1;
        if (text.length < needed) {
            throw new KilnException("benchmark: the validation text of " + corpus.source() + " has " + text.length
                    + " bytes; " + batch + " prompts of " + lm.promptLength() + " bytes need " + needed);
        }
        List<Integer> batchSizes = new ArrayList<>(new TreeSet<>(List.of(1, batch)));
        Map<Path, DecoderLm> models = new LinkedHashMap<>();
        List<Prepared> prepared = new ArrayList<>();
        for (BenchmarkHarness.Variant v : variants) {
            Path file = v.checkpoint() == null ? checkpoint : v.checkpoint().toAbsolutePath();
            DecoderLm model = models.computeIfAbsent(file, f -> LmCheckpoint.load(f, manager));
            if (lm.promptLength() + lm.newTokens() > model.config().maxLength()) {
                throw new KilnException("benchmark: promptLength + newTokens = " + (lm.promptLength()
                        + lm.newTokens()) + " exceeds the model's max-length " + model.config().maxLength());
            }
            SkipPolicy policy = v.skipId() == null ? null
                    : registry.create(Kind.SKIP, SkipPolicy.class, v.skipId(), v.skipParams());
            prepared.add(new Prepared(v, file, model, policy));
        }
        Decoding decoding = Decoding.greedy(settings.seed());
        for (Prepared p : prepared) {
            int seqLength = Math.min(p.model.config().maxLength() - 1, lm.promptLength() + lm.newTokens());
            p.perplexity = LmTrainer.policyPerplexity(p.model, text, seqLength, lm.perplexityWindows(), 8, p.policy,
                    settings.seed());
            for (int w = 0; w < settings.warmup(); w++) {
                for (int b : batchSizes) {
                    p.model.generateTimed(prompts(text, b, lm.promptLength()), lm.newTokens(), decoding, p.policy,
                            true);
                }
            }
            log.accept(String.format(Locale.ROOT, "%s: validation perplexity %.4f", p.variant.name(), p.perplexity));
        }
        for (int r = 0; r < settings.repeats(); r++) {
            for (int k = 0; k < prepared.size(); k++) {
                Prepared p = prepared.get((k + r) % prepared.size());
                for (int b : batchSizes) {
                    TimedGeneration timed = p.model.generateTimed(prompts(text, b, lm.promptLength()), lm.newTokens(),
                            decoding, p.policy, true);
                    p.decodeSeconds.computeIfAbsent(b, x -> new ArrayList<>()).add(timed.decodeNanos() / 1e9);
                    p.prefillSeconds.computeIfAbsent(b, x -> new ArrayList<>()).add(timed.prefillNanos() / 1e9);
                    if (b == batch) {
                        p.countLayers(timed.generation().layerRan(), lm.promptLength());
                    }
                }
            }
            log.accept("benchmark repeat " + (r + 1) + "/" + settings.repeats() + " done");
        }

        Prepared base = prepared.stream().filter(p -> p.variant == baselineVariant).findFirst().orElseThrow();
        double baseDecode = BenchStats.median(base.decodeSeconds.get(batch));
        List<BenchmarkResult.VariantResult> results = new ArrayList<>();
        for (Prepared p : prepared) {
            double decode = BenchStats.median(p.decodeSeconds.get(batch));
            Map<String, Object> extra = new LinkedHashMap<>();
            Map<String, Object> decodeRate = new LinkedHashMap<>();
            Map<String, Object> prefillRate = new LinkedHashMap<>();
            Map<String, Object> decodeSpeedup = new LinkedHashMap<>();
            for (int b : batchSizes) {
                double d = BenchStats.median(p.decodeSeconds.get(b));
                double pre = BenchStats.median(p.prefillSeconds.get(b));
                decodeRate.put("batch " + b, b * lm.newTokens() / d);
                prefillRate.put("batch " + b, b * lm.promptLength() / pre);
                decodeSpeedup.put("batch " + b, BenchStats.median(base.decodeSeconds.get(b)) / d);
            }
            extra.put("decodeTokensPerSecond", decodeRate);
            extra.put("prefillTokensPerSecond", prefillRate);
            extra.put("decodeSpeedup", decodeSpeedup);
            extra.put("promptLength", lm.promptLength());
            extra.put("newTokens", lm.newTokens());
            results.add(new BenchmarkResult.VariantResult(p.variant.name(), p == base, p.file.toString(),
                    p.variant.skipId(), p.variant.skipParams(), Double.NaN, p.model.config().layers(),
                    p.layerSteps == 0 ? p.model.config().layers() : (double) p.layersRun / p.layerSteps, decode,
                    batch * lm.newTokens() / decode, baseDecode / decode,
                    perTokenMillis(p.decodeSeconds.get(batch), lm.newTokens(), 50),
                    perTokenMillis(p.decodeSeconds.get(batch), lm.newTokens(), 95),
                    perTokenMillis(p.decodeSeconds.get(1), lm.newTokens(), 50),
                    perTokenMillis(p.decodeSeconds.get(1), lm.newTokens(), 95), BenchmarkHarness.heapPeak(),
                    BenchmarkHarness.rssPeak(), false, List.copyOf(p.decodeSeconds.get(batch)), p.perplexity,
                    extra));
        }
        return new BenchmarkResult(checkpoint.toString(), "decoder-lm", Map.of("layers", base.model.config().layers(),
                "dim", base.model.config().dim(), "heads", base.model.config().heads()), corpus.source(),
                batch * lm.newTokens(), settings, manager.getDevice().toString(),
                manager.getEngine().getEngineName() + " " + manager.getEngine().getVersion(),
                Runtime.getRuntime().availableProcessors(), false, results);
    }

    /** {@code count} prompts of {@code length} bytes from evenly spaced places in {@code text}. */
    static int[][] prompts(byte[] text, int count, int length) {
        int[][] prompts = new int[count][length];
        int stride = Math.max(length, (text.length - length) / count);
        for (int i = 0; i < count; i++) {
            int start = Math.min(i * stride, text.length - length);
            for (int j = 0; j < length; j++) {
                prompts[i][j] = text[start + j] & 0xFF;
            }
        }
        return prompts;
    }

    private static double perTokenMillis(List<Double> decodeSeconds, int tokens, double percentile) {
        List<Double> perToken = new ArrayList<>();
        for (double s : decodeSeconds) {
            perToken.add(s * 1000 / tokens);
        }
        return BenchStats.percentile(perToken, percentile);
    }

    /** One variant ready to run, and what it measured. */
    private static final class Prepared {
        final BenchmarkHarness.Variant variant;
        final Path file;
        final DecoderLm model;
        final SkipPolicy policy;
        final Map<Integer, List<Double>> decodeSeconds = new LinkedHashMap<>();
        final Map<Integer, List<Double>> prefillSeconds = new LinkedHashMap<>();
        double perplexity;
        long layersRun;
        long layerSteps;

        Prepared(BenchmarkHarness.Variant variant, Path file, DecoderLm model, SkipPolicy policy) {
            this.variant = variant;
            this.file = file;
            this.model = model;
            this.policy = policy;
        }

        /** Counts the layers that ran at each decoded position (prompt positions excluded). */
        void countLayers(boolean[][] layerRan, int promptLength) {
            for (int position = promptLength; position < layerRan.length; position++) {
                for (boolean ran : layerRan[position]) {
                    layersRun += ran ? 1 : 0;
                }
                layerSteps++;
            }
        }
    }
}
