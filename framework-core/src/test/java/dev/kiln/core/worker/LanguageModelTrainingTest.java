package dev.kiln.core.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.lm.train.LmCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The train goal's decoder-lm path, end to end through the worker on a small repetitive text. */
class LanguageModelTrainingTest {
    @TempDir
    Path dir;

    private ObjectNode config(Path text, Path output) {
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("model", "decoder-lm");
        ObjectNode params = config.putObject("modelParams");
        params.put("layers", "2");
        params.put("dim", "32");
        params.put("heads", "2");
        params.put("max-length", "64");
        config.put("dataset", text.toString());
        config.put("output", output.toString());
        config.put("steps", 60);
        config.put("seqLength", 32);
        config.put("batchSize", 8);
        config.put("learningRate", 0.003);
        config.put("seed", 5);
        config.putArray("augment");
        return config;
    }

    private static int run(ObjectNode config, List<Event> events) {
        return Worker.run(new WorkerRequest("train", config, 1, null, false), events::add,
                LanguageModelTrainingTest.class.getClassLoader());
    }

    @Test
    void trainsOnTextReportsPerplexityAndIsUpToDateTheSecondTime() throws Exception {
        StringBuilder text = new StringBuilder();
        String[] words = {"the house ", "of kiln ", "bakes models ", "in the build. "};
        for (int i = 0; i < 1500; i++) {
            text.append(words[(i * 7) % words.length]);
        }
        Path corpus = dir.resolve("corpus.txt");
        Files.writeString(corpus, text);
        Path output = dir.resolve("lm.safetensors");

        List<Event> events = new ArrayList<>();
        assertEquals(Worker.EXIT_OK, run(config(corpus, output), events), events.toString());
        JsonNode card = Json.MAPPER.readTree(TrainGoal.cardPath(output).toFile());
        double perplexity = card.path("validationPerplexity").asDouble();
        // A uniform byte model has perplexity 256; the text uses 20 distinct bytes in a fixed cycle.
        assertTrue(perplexity > 1 && perplexity < 20, "perplexity " + perplexity);
        assertEquals(2, LmCheckpoint.config(output).layers());
        assertEquals("decoder-lm", card.path("model").path("id").asText());

        List<Event> again = new ArrayList<>();
        assertEquals(Worker.EXIT_OK, run(config(corpus, output), again));
        String log = again.stream().map(e -> String.valueOf(e.message())).collect(Collectors.joining("\n"));
        assertTrue(log.contains(TrainGoal.UP_TO_DATE), log);
    }

    @Test
    void badSettingsFailBeforeTraining() throws Exception {
        Path corpus = dir.resolve("c.txt");
        Files.writeString(corpus, "x".repeat(5000));
        ObjectNode badParam = config(corpus, dir.resolve("a.safetensors"));
        ((ObjectNode) badParam.get("modelParams")).put("depth", "3");
        List<Event> events = new ArrayList<>();
        assertEquals(Worker.EXIT_USER_ERROR, run(badParam, events));
        assertTrue(events.get(events.size() - 1).message().contains("unknown parameter 'depth'"));

        ObjectNode withMixing = config(corpus, dir.resolve("b.safetensors"));
        withMixing.putArray("augment").addObject().put("id", "mixup");
        events.clear();
        assertEquals(Worker.EXIT_USER_ERROR, run(withMixing, events));
        assertTrue(events.get(events.size() - 1).message().contains("decoder-lm trains on text"));
        assertTrue(!Files.exists(dir.resolve("b.safetensors")));
    }
}
