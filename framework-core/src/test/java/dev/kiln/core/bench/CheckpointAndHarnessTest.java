package dev.kiln.core.bench;

import dev.kiln.core.model.CheckpointModels;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.training.ParameterStore;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Registry;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One tiny ResNet (width 4, two blocks per stage: six residual blocks, two of them with projection shortcuts) is
 * trained for one epoch on 320 embedded samples and saved; the tests load it back and benchmark it.
 */
class CheckpointAndHarnessTest {
    @TempDir
    static Path dir;

    private static NDManager manager;
    private static Path checkpoint;
    private static TrainingResult trained;
    private static ImageDataset test;

    /** Skips the residual blocks listed in {@code blocks} (comma-separated indices). */
    static final class DropListed implements SkipPolicy {
        private final List<Integer> dropped = new ArrayList<>();

        DropListed(String blocks) {
            for (String part : blocks.split(",")) {
                dropped.add(Integer.parseInt(part.trim()));
            }
        }

        @Override
        public KvCacheRule kvCacheRule() {
            return KvCacheRule.FIXED_LAYER_SET;
        }

        @Override
        public SkipSession begin(dev.kiln.spi.skip.ModelLayout layout, dev.kiln.spi.skip.Phase phase, int position,
                java.util.random.RandomGenerator random) {
            return layer -> !dropped.contains(layer);
        }
    }

    public static final class TestSkips implements TechniqueProvider {
        @Override
        public String spiVersion() {
            return KilnSpi.VERSION;
        }

        @Override
        public List<Technique<?>> techniques() {
            return List.of(SimpleTechnique.<SkipPolicy>of(Kind.SKIP, "drop-listed", "skips the listed blocks",
                    List.of(ParameterSpec.text("blocks", "0", "indices")), p -> new DropListed(p.getString(
                            "blocks"))));
        }
    }

    private static final Registry REGISTRY = Registry.of(List.of(new TestSkips()));

    @BeforeAll
    static void train() {
        LabeledData data = (LabeledData) Datasets.open(Path.of("..", "data", "fashion-mnist-mini"));
        ImageDataset train = data.train().shuffled(3).head(320);
        test = data.test().shuffled(4).head(150);
        manager = NDManager.newBaseManager();
        trained = new TrainingRun(TrainingConfig.builder("resnet").modelParameters(Map.of("width", "4", "blocks",
                "2")).epochs(1).batchSize(32).learningRate(0.05).seed(5).threads(1).build(), train, null, null)
                .run(manager);
        checkpoint = dir.resolve("model.safetensors");
        TrainingRun.saveModel(trained.model(), trained.metadata(), checkpoint);
    }

    @AfterAll
    static void close() {
        manager.close();
    }

    private static float[] logits(KilnModel model, NDArray inputs) {
        try (NDManager scope = manager.newSubManager()) {
            inputs.tempAttach(scope);
            return model.forward(new ParameterStore(scope, false), inputs, false).toFloatArray();
        }
    }

    @Test
    void loadedCheckpointGivesTheSameLogits() {
        try (NDManager scope = manager.newSubManager()) {
            CheckpointModels.Loaded loaded = CheckpointModels.load(checkpoint, scope);
            assertEquals("resnet", loaded.model().id());
            assertEquals(trained.model().modelParameters().asMap(), loaded.model().modelParameters().asMap());
            assertEquals(test.classNames(), loaded.classes());
            assertEquals(trained.normalization(), loaded.normalization());
            NDArray x = test.normalized(trained.normalization()).batch(scope, new int[] {0, 1, 2, 3, 4, 5, 6, 7},
                    0, 8).get(0);
            float[] want = logits(trained.model(), x);
            float[] got = logits(loaded.model(), x);
            assertEquals(8 * 10, got.length);
            assertArrayEquals(want, got, 0f);
        }
    }

    @Test
    void missingFileAndMissingMetadataKeyAreNamed() {
        KilnException missing = assertThrows(KilnException.class,
                () -> CheckpointModels.load(dir.resolve("nope.safetensors"), manager));
        assertTrue(missing.getMessage().contains("nope.safetensors") && missing.getMessage().contains(
                "does not exist"), missing.getMessage());

        Map<String, String> meta = new LinkedHashMap<>(trained.metadata());
        meta.put("kiln.format", "model-v1");
        meta.remove("kiln.model.parameters");
        Path bad = dir.resolve("no-params.safetensors");
        try (NDManager scope = manager.newSubManager()) {
            SafetensorsWriter.save(bad, meta, trained.model().exportParameters(scope));
        }
        KilnException e = assertThrows(KilnException.class, () -> CheckpointModels.load(bad, manager));
        assertTrue(e.getMessage().contains("not a Kiln classifier checkpoint")
                && e.getMessage().contains("'kiln.model.parameters'"), e.getMessage());
    }

    @Test
    void skippingABlockEqualsZeroingItsResidualBranch() throws Exception {
        // Independent reference: a block whose last conv is all zeros outputs exactly its shortcut.
        try (NDManager scope = manager.newSubManager()) {
            CheckpointModels.Loaded skipped = CheckpointModels.load(checkpoint, scope);
            CheckpointModels.Loaded zeroed = CheckpointModels.load(checkpoint, scope);
            // block 0: identity shortcut (stage1.block1); block 2: projection shortcut (stage2.block1)
            for (String name : List.of("stage1.block1.conv2.weight", "stage2.block1.conv2.weight")) {
                zeroed.model().parameters().get(name).getArray().set(new NDIndex(":"), 0f);
            }
            LayeredForward forward = new LayeredForward(skipped.model());
            assertEquals(6, forward.residualBlocks());
            NDArray x = test.normalized(skipped.normalization()).batch(scope, new int[] {3, 4, 5, 6}, 0, 4).get(0);
            float[] want = logits(zeroed.model(), x);
            LayeredForward.Output out;
            float[] got;
            try (NDManager inner = scope.newSubManager()) {
                x.tempAttach(inner);
                out = forward.forward(new ParameterStore(inner, false), x, new DropListed("0,2").begin(
                        forward.layout(), dev.kiln.spi.skip.Phase.FORWARD, 0, null));
                got = out.logits().toFloatArray();
            }
            assertEquals(4, out.blocksRun());
            assertArrayEquals(want, got, 1e-5f);
            // Without a session the layered loop is the model's own forward.
            try (NDManager inner = scope.newSubManager()) {
                x.tempAttach(inner);
                assertArrayEquals(logits(skipped.model(), x), forward.forward(new ParameterStore(inner, false), x,
                        null).logits().toFloatArray(), 0f);
            }
        }
    }

    @Test
    void harnessMeasuresBaselineAndSkipVariantInOneRun() {
        BenchmarkHarness harness = new BenchmarkHarness(REGISTRY, null);
        BenchmarkHarness.Settings settings = new BenchmarkHarness.Settings(32, 1, 3, 4, 0, 1);
        List<BenchmarkHarness.Variant> variants = List.of(
                new BenchmarkHarness.Variant("skip4", "drop-listed", Map.of("blocks", "1,3,4,5"), null),
                BenchmarkHarness.Variant.plain("full"));
        BenchmarkResult result;
        double[] reference;
        double[] skipReference;
        try (NDManager scope = manager.newSubManager()) {
            result = harness.run(checkpoint, test, variants, settings, scope);
            // Reference accuracies from TrainingRun.evaluate on the trained model, and on a copy whose skipped
            // blocks are zeroed out (blocks 1, 3, 4, 5 are all identity-shortcut blocks).
            ImageDataset normalized = test.normalized(trained.normalization());
            reference = TrainingRun.evaluate(trained.model(), normalized, scope, new ParameterStore(scope, false), 50);
            CheckpointModels.Loaded zeroed = CheckpointModels.load(checkpoint, scope);
            for (String name : List.of("stage1.block2", "stage2.block2", "stage3.block1", "stage3.block2")) {
                zeroed.model().parameters().get(name + ".conv2.weight").getArray().set(new NDIndex(":"), 0f);
            }
            skipReference = TrainingRun.evaluate(zeroed.model(), normalized, scope, new ParameterStore(scope, false),
                    50);
        }
        assertEquals(List.of("full", "skip4"), result.variants().stream().map(BenchmarkResult.VariantResult::name)
                .toList(), "the plain variant is the baseline and runs first");
        BenchmarkResult.VariantResult full = result.variant("full");
        BenchmarkResult.VariantResult skip = result.variant("skip4");
        assertTrue(full.baseline());
        assertEquals(150, result.samples());
        assertEquals(reference[1], full.accuracy(), 1e-12);
        assertEquals(skipReference[1], skip.accuracy(), 1e-12);
        assertEquals(1.0, full.speedup(), 0);
        assertEquals(6.0, skip.blocks());
        assertEquals(2.0, skip.blocksRun(), 0);
        assertEquals(3.0, skip.theoreticalSpeedup(), 1e-12);
        assertEquals(full.medianPassSeconds() / skip.medianPassSeconds(), skip.speedup(), 1e-12);
        for (BenchmarkResult.VariantResult v : result.variants()) {
            assertEquals(3, v.passSeconds().size());
            assertEquals(BenchStats.median(v.passSeconds()), v.medianPassSeconds(), 0);
            assertEquals(150 / v.medianPassSeconds(), v.samplesPerSecond(), 1e-9);
            assertTrue(v.latencyP50Millis() > 0 && v.latencyP95Millis() >= v.latencyP50Millis(), v.toString());
            assertTrue(v.latency1P50Millis() > 0 && v.latency1P95Millis() >= v.latency1P50Millis(), v.toString());
            assertTrue(v.heapPeakBytes() > 0);
            if (Files.exists(Path.of("/proc/self/status"))) {
                assertTrue(v.rssPeakBytes() > 1 << 20, "RSS " + v.rssPeakBytes());
            }
        }
    }

    @Test
    void badVariantsFailBeforeMeasuring() {
        BenchmarkHarness harness = new BenchmarkHarness(REGISTRY, null);
        BenchmarkHarness.Settings settings = BenchmarkHarness.Settings.defaults();
        KilnException unknown = assertThrows(KilnException.class, () -> harness.run(checkpoint, test, List.of(
                new BenchmarkHarness.Variant("fast", "unifed", Map.of(), null)), settings, manager));
        assertTrue(unknown.getMessage().startsWith("variant 'fast': ") && unknown.getMessage().contains("unifed"),
                unknown.getMessage());
        KilnException badParam = assertThrows(KilnException.class, () -> harness.run(checkpoint, test, List.of(
                new BenchmarkHarness.Variant("fast", "drop-listed", Map.of("blockz", "1"), null)), settings,
                manager));
        assertTrue(badParam.getMessage().contains("blockz"), badParam.getMessage());
        KilnException duplicate = assertThrows(KilnException.class, () -> harness.run(checkpoint, test, List.of(
                BenchmarkHarness.Variant.plain("a"), BenchmarkHarness.Variant.plain("a")), settings, manager));
        assertTrue(duplicate.getMessage().contains("'a'"), duplicate.getMessage());
        KilnException batch = assertThrows(KilnException.class, () -> new BenchmarkHarness.Settings(0, 1, 1, 1, 0,
                1));
        assertTrue(batch.getMessage().contains("<batchSize> is 0"), batch.getMessage());
        assertEquals(List.of("baseline", "fast"), BenchmarkHarness.variantNames(List.of(
                new BenchmarkHarness.Variant("fast", "drop-listed", Map.of(), null))));
    }

    @Test
    void goalWritesTheReportThenFailsOnEveryMissedGate() throws Exception {
        Path reports = dir.resolve("reports");
        String json = "{\"checkpoint\": \"" + checkpoint + "\", \"dataset\": \"../data/fashion-mnist-mini\","
                + " \"reportDir\": \"" + reports + "\", \"batchSize\": 50, \"warmup\": 1, \"repeats\": 1,"
                + " \"latencySamples\": 2, \"limit\": 100,"
                + " \"variants\": [{\"name\": \"full\"}, {\"name\": \"half\", \"skip\": {\"id\": \"drop-listed\","
                + " \"params\": {\"blocks\": \"1,4\"}}}],"
                + " \"gates\": [{\"minAccuracy\": 0.99}, {\"variant\": \"half\", \"minSpeedup\": 50}]}";
        dev.kiln.core.worker.WorkerRequest request = new dev.kiln.core.worker.WorkerRequest("benchmark",
                dev.kiln.core.worker.Json.MAPPER.readTree(json), 1, null, true);
        List<dev.kiln.core.worker.Event> events = new ArrayList<>();
        KilnException e = assertThrows(KilnException.class, () -> new BenchmarkGoal(REGISTRY).run(request,
                events::add));
        assertTrue(e.getMessage().startsWith("3 benchmark gates missed"), e.getMessage());
        assertTrue(e.getMessage().contains("gate minAccuracy for variant 'full' missed: measured "), e.getMessage());
        assertTrue(e.getMessage().contains("< required 0.99"), e.getMessage());
        assertTrue(e.getMessage().contains("gate minSpeedup for variant 'half' missed"), e.getMessage());
        for (String name : List.of("report.json", "report.md", "report.html")) {
            assertTrue(Files.isRegularFile(reports.resolve(name)), name);
        }
        com.fasterxml.jackson.databind.JsonNode doc = dev.kiln.core.worker.Json.MAPPER.readTree(
                reports.resolve("report.json").toFile());
        assertEquals(100, doc.path("samples").asInt());
        assertEquals(3, doc.path("gates").size());
        assertTrue(events.stream().anyMatch(ev -> "warn".equals(ev.level()) && ev.message().contains("minSpeedup")));

        // A typo in a gate's variant fails before any measuring.
        String typo = json.replace("\"variant\": \"half\"", "\"variant\": \"halv\"");
        KilnException early = assertThrows(KilnException.class, () -> new BenchmarkGoal(REGISTRY).run(
                new dev.kiln.core.worker.WorkerRequest("benchmark", dev.kiln.core.worker.Json.MAPPER.readTree(typo),
                        1, null, true), ev -> { }));
        assertTrue(early.getMessage().contains("'halv'"), early.getMessage());
    }
}
