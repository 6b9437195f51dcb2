package dev.kiln.core.compress;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code soup} goal end to end on a tiny cnn, with the written soup's zeros counted independently here. */
class SoupGoalTest {
    private static final Path DATA = Path.of("..", "data", "fashion-mnist-mini");
    private static final List<String> PRUNABLE = List.of("conv1.weight", "conv2.weight", "fc1.weight", "fc.weight");

    @TempDir
    static Path dir;
    private static Path model;

    @BeforeAll
    static void trainTinyCnn() {
        LabeledData data = (LabeledData) Datasets.open(DATA);
        TrainingConfig config = TrainingConfig.builder("cnn").modelParameters(Map.of("width", "4", "hidden", "16"))
                .epochs(1).batchSize(64).learningRate(0.05).seed(3).threads(1).build();
        model = dir.resolve("model.safetensors");
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingResult result = new TrainingRun(config, data.train().head(1000), data.test(), null).run(manager);
            TrainingRun.saveModel(result.model(), result.metadata(), model);
        }
    }

    private static ObjectNode config(Path output) {
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("checkpoint", model.toString());
        config.put("dataset", DATA.toString());
        config.put("output", output.toString());
        config.put("sparsity", 0.6);
        config.put("ingredients", 2);
        config.put("rounds", 2);
        config.put("epochs", 1);
        config.put("batchSize", 128);
        return config;
    }

    private static Map<String, Object> run(ObjectNode config, List<Event> events) throws Exception {
        return new SoupGoal(CompressTestTechniques.registry()).run(new WorkerRequest("soup", config, 1, null, true),
                events::add);
    }

    @Test
    void soupKeepsExactlyTheMasksSparsityAndIsUpToDateTheSecondTime() throws Exception {
        Path out = dir.resolve("soup/soup.safetensors");
        List<Event> events = new ArrayList<>();
        Map<String, Object> result = run(config(out), events);
        assertEquals(false, result.get("upToDate"));

        // Per-tensor magnitude pruning to 60% keeps round(0.4 n) weights of each prunable tensor; everything the
        // mask removed is an exact zero in the soup, and no kept weight happens to be zero.
        long zeros = 0;
        long size = 0;
        try (SafetensorsReader reader = SafetensorsReader.open(out); NDManager m = NDManager.newBaseManager()) {
            assertEquals("model-v1", reader.metadata().get("kiln.format"));
            assertEquals("cnn", reader.metadata().get("kiln.model"));
            for (String name : PRUNABLE) {
                float[] w = reader.read(name, m).toFloatArray();
                long z = 0;
                for (float v : w) {
                    z += v == 0f ? 1 : 0;
                }
                assertEquals(w.length - Math.round(0.4 * w.length), z, name);
                zeros += z;
                size += w.length;
            }
            float[] bias = reader.read("fc.bias", m).toFloatArray();
            for (float v : bias) {
                assertTrue(v != 0f, "biases are never pruned");
            }
        }
        JsonNode report = Json.MAPPER.readTree(CompressGoal.reportPath(out).toFile());
        assertEquals((double) zeros / size, report.get("soupSparsity").asDouble(), 1e-12);
        assertEquals(report.get("maskSparsity").asDouble(), report.get("soupSparsity").asDouble(), 1e-12);
        assertEquals(0, report.get("maskViolations").asLong());
        assertEquals(2, report.get("roundResults").size());
        assertEquals(0.3, report.get("roundResults").get(0).get("sparsity").asDouble(), 1e-12);
        assertEquals(0.6, report.get("roundResults").get(1).get("sparsity").asDouble(), 1e-12);
        assertEquals(2, report.get("roundResults").get(1).get("ingredientAccuracies").size());
        double soupAccuracy = report.get("soupAccuracy").asDouble();
        assertTrue(soupAccuracy > 0.3 && soupAccuracy <= 1, "soup accuracy " + soupAccuracy);
        assertEquals(soupAccuracy, (Double) result.get("soupAccuracy"), 0);
        assertEquals(4, events.stream().filter(e -> e.message().matches("round \\d/2: ingredient \\d/2 .*"))
                .count());

        events.clear();
        Map<String, Object> again = run(config(out), events);
        assertEquals(true, again.get("upToDate"));
        assertTrue(events.stream().anyMatch(e -> SoupGoal.UP_TO_DATE.equals(e.message())));
    }

    @Test
    void badSettingsFailBeforeAnyDataIsRead() throws Exception {
        Path out = dir.resolve("bad/soup.safetensors");
        List<Event> events = new ArrayList<>();
        // The dataset path does not exist: each error below must come first, before the data is opened.
        ObjectNode range = config(out).put("sparsity", 1.0).put("dataset", "/no/such/data");
        KilnException sparsity = assertThrows(KilnException.class, () -> run(range, events));
        assertTrue(sparsity.getMessage().contains("sparsity") && sparsity.getMessage().contains("[0, 1)"),
                sparsity.getMessage());
        ObjectNode missing = config(out).put("dataset", "/no/such/data");
        missing.remove("sparsity");
        KilnException required = assertThrows(KilnException.class, () -> run(missing, events));
        assertTrue(required.getMessage().contains("<sparsity>"), required.getMessage());
        ObjectNode zero = config(out).put("ingredients", 0).put("dataset", "/no/such/data");
        KilnException ingredients = assertThrows(KilnException.class, () -> run(zero, events));
        assertTrue(ingredients.getMessage().contains("ingredients"), ingredients.getMessage());
        ObjectNode typo = config(out).put("dataset", "/no/such/data");
        typo.putArray("augment").addObject().put("id", "mixupp");
        KilnException augment = assertThrows(KilnException.class, () -> run(typo, events));
        assertTrue(augment.getMessage().contains("mixupp"), augment.getMessage());
        ObjectNode lr = config(out).put("learningRate", -1).put("dataset", "/no/such/data");
        KilnException learningRate = assertThrows(KilnException.class, () -> run(lr, events));
        assertTrue(learningRate.getMessage().contains("learningRate"), learningRate.getMessage());

        // A compressed checkpoint is not a starting point.
        Path int8 = dir.resolve("int8.safetensors");
        new CompressPipeline("int8", Map.of(), CompressTestTechniques.registry().create(
                dev.kiln.spi.Kind.COMPRESS, dev.kiln.spi.compress.Compressor.class, "int8", Map.of()))
                .run(model, int8, NDManager.newBaseManager(), Map.of());
        ObjectNode compressed = config(out).put("checkpoint", int8.toString());
        KilnException format = assertThrows(KilnException.class, () -> run(compressed, events));
        assertTrue(format.getMessage().contains("compressed-v1"), format.getMessage());
        assertFalse(out.toFile().exists(), "nothing is written when a soup fails");
    }
}
