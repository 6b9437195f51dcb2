package dev.kiln.core.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.TextCorpus;
import dev.kiln.core.lm.DecoderConfig;
import dev.kiln.core.lm.DecoderLm;
import dev.kiln.core.lm.train.LmCheckpoint;
import dev.kiln.core.lm.train.LmTrainer;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.SkipPolicy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The language-model side of the benchmark: perplexity through the policy, layers run, gates, reports. */
class LanguageModelHarnessTest {
    @TempDir
    Path dir;

    /** Runs the even layers only: a fixed set, so the KV cache stays valid. */
    private static final SkipPolicy EVEN_LAYERS = new SkipPolicy() {
        @Override
        public KvCacheRule kvCacheRule() {
            return KvCacheRule.FIXED_LAYER_SET;
        }

        @Override
        public dev.kiln.spi.skip.SkipSession begin(dev.kiln.spi.skip.ModelLayout layout,
                dev.kiln.spi.skip.Phase phase, int position, java.util.random.RandomGenerator random) {
            return layer -> layer % 2 == 0;
        }
    };

    private static Registry registry() {
        TechniqueProvider provider = new TechniqueProvider() {
            @Override
            public String spiVersion() {
                return KilnSpi.VERSION;
            }

            @Override
            public List<Technique<?>> techniques() {
                return List.of(SimpleTechnique.<SkipPolicy>of(Kind.SKIP, "even", "even layers", List.of(),
                        p -> EVEN_LAYERS));
            }
        };
        return Registry.of(List.of(provider));
    }

    @Test
    void measuresPerplexityThroughThePolicyAndGatesIt() throws Exception {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) {
            text.append("kiln bakes models ").append(i % 7).append(". ");
        }
        Path corpusFile = dir.resolve("corpus.txt");
        Files.writeString(corpusFile, text);
        TextCorpus corpus = TextCorpus.read(corpusFile, 0.5);
        Path checkpoint = dir.resolve("lm.safetensors");
        try (NDManager manager = NDManager.newBaseManager()) {
            DecoderLm model = new DecoderLm(new DecoderConfig(4, 32, 2, 2, 64, true), manager, 3);
            LmCheckpoint.save(model, checkpoint, Map.of("kiln.format", "decoder-lm-v1"));
            double full = LmTrainer.perplexity(model, corpus.validation(), 16, 2, 8);

            BenchmarkHarness.Settings settings = new BenchmarkHarness.Settings(4, 0, 2, 1, 0, 7);
            LanguageModelHarness.LmSettings lm = new LanguageModelHarness.LmSettings(8, 8, 2);
            List<BenchmarkHarness.Variant> variants = List.of(BenchmarkHarness.Variant.plain("full"),
                    new BenchmarkHarness.Variant("half", "even", Map.of(), null));
            BenchmarkResult result = new LanguageModelHarness(registry(), line -> { }).run(checkpoint, corpus,
                    variants, settings, lm, manager);

            assertTrue(result.languageModel());
            BenchmarkResult.VariantResult baseline = result.variant("full");
            BenchmarkResult.VariantResult half = result.variant("half");
            assertTrue(baseline.baseline());
            // The baseline's cached teacher forcing gives the parallel full-model perplexity (same windows: T = 16).
            assertEquals(full, baseline.perplexity(), 1e-3 * full);
            assertFalse(Math.abs(half.perplexity() - baseline.perplexity()) < 1e-6, "skipping changes the model");
            assertEquals(4.0, baseline.blocksRun(), 1e-9);
            assertEquals(2.0, half.blocksRun(), 1e-9);
            assertEquals(2.0, half.theoreticalSpeedup(), 1e-9);
            assertEquals(2, half.passSeconds().size());
            assertTrue(((Map<?, ?>) half.extra().get("decodeTokensPerSecond")).containsKey("batch 4"));

            List<Gates.Check> checks = Gates.evaluate(List.of(new Gates.Gate("half", null, null, null, null,
                    baseline.perplexity() * 0.5)), result);
            assertEquals(1, checks.size());
            assertFalse(checks.get(0).passed());
            assertTrue(checks.get(0).message().startsWith("gate maxPerplexity for variant 'half' missed"),
                    checks.get(0).message());

            String markdown = BenchmarkReport.markdown(result, checks);
            assertTrue(markdown.contains("| variant | skip | perplexity | speedup |"), markdown);
            assertTrue(BenchmarkReport.html(result, checks).contains("validation perplexity"));
        }
    }
}
