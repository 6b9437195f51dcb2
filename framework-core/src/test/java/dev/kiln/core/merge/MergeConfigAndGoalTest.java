package dev.kiln.core.merge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Registry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MergeConfigAndGoalTest {
    @TempDir
    Path dir;

    /** The dare_ties example of mergekit's README, verbatim apart from the model names. */
    static final String DARE_TIES = """
            models:
              - model: mistral-7b
                # no parameters necessary for base model
              - model: samir-gpt
                parameters:
                  density: 0.53
                  weight: 0.4
              - model: slerp-cm
                parameters:
                  density: 0.53
                  weight: 0.3
            merge_method: dare_ties
            base_model: mistral-7b
            parameters:
              int8_mask: true
            dtype: bfloat16
            """;

    @Test
    void translatesARealMergekitRecipe() {
        MergeConfig c = MergeConfig.parse(DARE_TIES, dir, "recipe.yml");
        assertEquals("dare", c.methodId());
        assertEquals(Map.of("consensus", "ties", "rescale", "l1"), c.params());
        assertEquals(dir.resolve("mistral-7b"), c.base());
        assertEquals(2, c.models().size(), "the base listed among the models is not a task vector");
        assertEquals(dir.resolve("samir-gpt"), c.models().get(0).path());
        assertEquals(0.4, c.models().get(0).weight());
        assertEquals(Map.of("density", 0.53), c.models().get(0).overrides());
        assertEquals(0.3, c.models().get(1).weight());
        assertEquals(DType.BF16, c.outputDtype());
        assertTrue(c.warnings().stream().anyMatch(w -> w.contains("int8_mask")), c.warnings().toString());
    }

    @Test
    void mapsMethodNamesAndGlobalParameters() {
        MergeConfig ta = MergeConfig.parse("""
                merge_method: task_arithmetic
                base_model: base
                models:
                  - model: a
                parameters:
                  lambda: 0.5
                  normalize: true
                tokenizer_source: union
                """, dir, "x.yml");
        assertEquals("task-arithmetic", ta.methodId());
        assertEquals(Map.of("lambda", "0.5", "normalize", "true"), ta.params());
        assertTrue(ta.warnings().stream().anyMatch(w -> w.contains("tokenizer_source")));
        assertNull(ta.outputDtype());

        MergeConfig slerp = MergeConfig.parse("""
                merge_method: slerp
                base_model: b
                models:
                  - model: a
                  - model: b
                parameters:
                  t: 0.3
                """, dir, "s.yml");
        assertEquals("slerp", slerp.methodId());
        assertNull(slerp.base());
        assertEquals(List.of(dir.resolve("b"), dir.resolve("a")),
                slerp.models().stream().map(MergeSpec.ModelInput::path).toList(), "base first: t = 0 is the base");
        assertEquals("0.3", slerp.params().get("t"));
        assertEquals(Map.of("consensus", "none", "rescale", "l1"),
                MergeConfig.parse("merge_method: dare_linear\nmodels: [{model: a}]\n", dir, "d").params());
    }

    @Test
    void rejectsUnknownKeysMethodsAndGradientsNamingTheLine() {
        String m = assertThrows(KilnException.class, () -> MergeConfig.parse("""
                merge_method: ties
                models:
                  - model: a
                slices: []
                """, dir, "r.yml")).getMessage();
        assertTrue(m.contains("unsupported key 'slices'") && m.contains("line 4"), m);
        assertTrue(m.contains("supported keys: base_model, chat_template, dtype, merge_method, models"), m);
        m = assertThrows(KilnException.class, () -> MergeConfig.parse("merge_method: della\nmodels: [{model: a}]\n",
                dir, "r.yml")).getMessage();
        assertTrue(m.contains("unsupported merge_method 'della'") && m.contains("dare_ties") && m.contains("line 1"),
                m);
        m = assertThrows(KilnException.class, () -> MergeConfig.parse("""
                merge_method: ties
                models:
                  - model: a
                    parameters:
                      density: [1, 0.7, 0.1]
                """, dir, "r.yml")).getMessage();
        assertTrue(m.contains("density") && m.contains("gradients") && m.contains("line 5"), m);
        m = assertThrows(KilnException.class, () -> MergeConfig.parse("merge_method: ties\nmodels: [{model: a}]\n"
                + "parameters: {lamda: 2}\n", dir, "r.yml")).getMessage();
        assertTrue(m.contains("unsupported parameter 'lamda'") && m.contains("lambda"), m);
        m = assertThrows(KilnException.class, () -> MergeConfig.parse("merge_method: [ties\n", dir, "r.yml"))
                .getMessage();
        assertTrue(m.contains("not valid YAML"), m);
    }

    private MergeGoal goal() {
        return new MergeGoal(Registry.of(List.of(new MergeTestTechniques())));
    }

    private ObjectNode config(Path out, Path... models) {
        ObjectNode c = JsonNodeFactory.instance.objectNode();
        c.put("method", "test-linear");
        c.putObject("params").put("normalize", "true");
        ArrayNode list = c.putArray("models");
        for (int i = 0; i < models.length; i++) {
            list.addObject().put("path", models[i].toString()).put("weight", i + 1.0);
        }
        c.put("output", out.toString());
        c.put("threads", 2);
        return c;
    }

    @Test
    void goalMergesThenSkipsWhenNothingChangedAndMergesAgainWhenAnInputChanges() throws Exception {
        Path a = dir.resolve("a.safetensors");
        Path b = dir.resolve("b.safetensors");
        MergePipelineTest.write(a, MergePipelineTest.T.f("w", DType.F32, new float[] {1, 2, 3}, 3));
        MergePipelineTest.write(b, MergePipelineTest.T.f("w", DType.F32, new float[] {4, 5, 6}, 3));
        Path out = dir.resolve("merged.safetensors");
        List<Event> events = new ArrayList<>();
        Map<String, Object> result = goal().run(new WorkerRequest("merge", config(out, a, b), 1, null, false),
                events::add);
        assertEquals(out.toString(), result.get("output"));
        assertTrue(Files.exists(Path.of((String) result.get("report"))));
        try (SafetensorsReader r = SafetensorsReader.open(out)) {
            float[] w = r.readFloats("w");
            // (1*a + 2*b) / 3
            assertEquals(3.0, w[0], 1e-6);
            assertEquals(4.0, w[1], 1e-6);
            assertEquals(5.0, w[2], 1e-6);
        }
        assertTrue(events.stream().anyMatch(e -> "Merging because inputs changed".equals(e.message())));

        events.clear();
        goal().run(new WorkerRequest("merge", config(out, a, b), 1, null, false), events::add);
        assertTrue(events.stream().anyMatch(e -> MergeGoal.UP_TO_DATE.equals(e.message())), events.toString());

        events.clear();
        ObjectNode changed = config(out, a, b);
        changed.with("params").put("normalize", "false");
        goal().run(new WorkerRequest("merge", changed, 1, null, false), events::add);
        assertFalse(events.stream().anyMatch(e -> MergeGoal.UP_TO_DATE.equals(e.message())));
        try (SafetensorsReader r = SafetensorsReader.open(out)) {
            assertEquals(9.0, r.readFloats("w")[0], 1e-6);
        }

        events.clear();
        changed.put("force", true);
        goal().run(new WorkerRequest("merge", changed, 1, null, false), events::add);
        assertTrue(events.stream().anyMatch(e -> "Merging because force = true".equals(e.message())));
    }

    @Test
    void goalRunsAYamlRecipeAndFailsFastOnAnUnknownMethod() throws Exception {
        Path a = dir.resolve("a.safetensors");
        Path b = dir.resolve("b.safetensors");
        MergePipelineTest.write(a, MergePipelineTest.T.f("w", DType.F32, new float[] {1, 2}, 2));
        MergePipelineTest.write(b, MergePipelineTest.T.f("w", DType.F32, new float[] {3, 4}, 2));
        ObjectNode c = JsonNodeFactory.instance.objectNode();
        c.put("method", "test-lineer");
        c.putArray("models").addObject().put("path", dir.resolve("does-not-exist").toString());
        c.put("output", dir.resolve("x.safetensors").toString());
        String m = assertThrows(KilnException.class, () -> goal().run(new WorkerRequest("merge", c, 1, null, false),
                e -> { })).getMessage();
        assertTrue(m.contains("did you mean 'test-linear'"), m);

        // A recipe whose method is not installed fails in the registry with the Kiln id.
        Path recipe = dir.resolve("recipe.yml");
        Files.writeString(recipe, "merge_method: linear\nmodels:\n  - model: a.safetensors\n  - model: b.safetensors\n"
                + "dtype: float16\n");
        ObjectNode y = JsonNodeFactory.instance.objectNode();
        y.put("config", recipe.toString());
        y.put("output", dir.resolve("y.safetensors").toString());
        m = assertThrows(KilnException.class, () -> goal().run(new WorkerRequest("merge", y, 1, null, false),
                e -> { })).getMessage();
        assertTrue(m.contains("unknown merge method 'linear'"), m);
        ObjectNode both = y.deepCopy();
        both.put("method", "test-linear");
        m = assertThrows(KilnException.class, () -> goal().run(new WorkerRequest("merge", both, 1, null, false),
                e -> { })).getMessage();
        assertTrue(m.contains("cannot be combined"), m);
    }
}
