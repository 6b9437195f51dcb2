package dev.kiln.core.fisher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.merge.MergeGoal;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.merge.MergeMethod;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The merge goal driven as a pom would: method fisher plus a dataset computes the Fishers, then reuses them. */
class FisherMergeGoalTest {
    @TempDir
    Path dir;

    public static final class Provider implements TechniqueProvider {
        @Override
        public String spiVersion() {
            return KilnSpi.VERSION;
        }

        @Override
        public List<Technique<?>> techniques() {
            return List.of(SimpleTechnique.<MergeMethod>of(Kind.MERGE, "fisher", "Fisher-weighted average",
                    List.of(), p -> new FisherMergeEndToEndTest.FisherWeighted()));
        }
    }

    private Path checkpoint(String name, long seed) {
        Path file = dir.resolve(name + ".safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            var model = ModelZoo.build("mlp", Map.of("hidden", "3"), new Shape(4, 1, 1), 3).initialize(m, seed);
            Map<String, String> meta = new LinkedHashMap<>();
            meta.put("kiln.model", "mlp");
            meta.put("kiln.model.parameters", "{\"hidden\":\"3\"}");
            meta.put("kiln.data.classes", "[\"0\",\"1\",\"2\"]");
            meta.put("kiln.input.shape", "(4, 1, 1)");
            meta.put("kiln.normalization", "none");
            TrainingRun.saveModel(model, meta, file);
        }
        return file;
    }

    @Test
    void fisherDatasetComputesFishersOnceThenEverythingIsUpToDate() throws Exception {
        Path csv = dir.resolve("data.csv");
        StringBuilder text = new StringBuilder("x1,x2,x3,x4,label\n");
        Random r = new Random(1);
        for (int i = 0; i < 20; i++) {
            text.append(String.format(java.util.Locale.ROOT, "%.4f,%.4f,%.4f,%.4f,%d%n", r.nextGaussian(),
                    r.nextGaussian(), r.nextGaussian(), r.nextGaussian(), i % 3));
        }
        Files.writeString(csv, text);
        Path a = checkpoint("a", 1);
        Path b = checkpoint("b", 2);
        Path out = dir.resolve("merged.safetensors");
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("method", "fisher");
        config.putArray("models").addObject().put("path", a.toString());
        ((com.fasterxml.jackson.databind.node.ArrayNode) config.get("models")).addObject().put("path", b.toString())
                .put("weight", 0.5);
        config.put("output", out.toString());
        config.put("fisherDataset", csv.toString());
        config.put("fisherSamples", 8);
        config.put("fisherMode", "true");
        MergeGoal goal = MergeGoal.using(Registry.of(List.of(new Provider())));

        List<Event> events = new ArrayList<>();
        goal.run(new WorkerRequest("merge", config, 1, null, false), events::add);
        assertTrue(Files.exists(out));
        for (Path p : List.of(a, b)) {
            try (SafetensorsReader f = SafetensorsReader.open(FisherEstimator.fisherFile(p))) {
                assertEquals("true", f.metadata().get(FisherEstimator.KEY_MODE));
                assertEquals("8", f.metadata().get(FisherEstimator.KEY_SAMPLES));
            }
        }
        assertEquals(2, events.stream().filter(e -> e.message().startsWith("Computed the true Fisher")).count(),
                events.toString());

        events.clear();
        goal.run(new WorkerRequest("merge", config, 1, null, false), events::add);
        assertTrue(events.stream().anyMatch(e -> MergeGoal.UP_TO_DATE.equals(e.message())), events.toString());
        assertFalse(events.stream().anyMatch(e -> e.message().startsWith("Computed")), events.toString());

        // A different sample count makes the Fishers stale, and the merge follows them.
        config.put("fisherSamples", 12);
        events.clear();
        goal.run(new WorkerRequest("merge", config, 1, null, false), events::add);
        assertEquals(2, events.stream().filter(e -> e.message().startsWith("Computed")).count(), events.toString());
        assertFalse(events.stream().anyMatch(e -> MergeGoal.UP_TO_DATE.equals(e.message())), events.toString());
    }
}
