package dev.kiln.core.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.lora.LoraFixtures.Factors;
import dev.kiln.core.lora.LoraFixtures.Mat;
import dev.kiln.core.merge.MergeGoal;
import dev.kiln.core.merge.MergeTestTechniques;
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
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** kiln:merge driven with {@code <adapters>}: the configuration a pom produces, through the worker goal. */
class LoraMergeGoalTest {
    @TempDir
    Path dir;

    private static final String Q = "blocks.0.attn.q";
    private Mat w;
    private Factors f1;
    private Factors f2;
    private Path basePath;
    private Path a1;
    private Path a2;

    @BeforeEach
    void setUp() throws Exception {
        Random r = new Random(21);
        w = Mat.random(r, 4, 3, 1);
        basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F32, Map.of(Q + ".weight", w));
        f1 = Factors.random(r, Q, 2, 3, 4);
        f2 = Factors.random(r, Q, 1, 3, 4);
        a1 = LoraFixtures.writeAdapter(dir.resolve("a1"), 2, 2.0, false, false, null, f1);
        a2 = LoraFixtures.writeAdapter(dir.resolve("a2"), 1, 3.0, false, false, null, f2);
    }

    private ObjectNode config(String combination, Path output) {
        ObjectNode c = JsonNodeFactory.instance.objectNode();
        if (combination != null) {
            c.put("adapterCombination", combination);
        }
        ArrayNode list = c.putArray("adapters");
        list.addObject().put("path", a1.toString()).put("weight", 0.5);
        list.addObject().put("path", a2.toString()).put("weight", "2");
        c.put("output", output.toString());
        return c;
    }

    private Map<String, Object> run(ObjectNode config, List<Event> events) throws Exception {
        MergeGoal goal = MergeGoal.using(Registry.of(List.of(new MergeTestTechniques())));
        return goal.run(new WorkerRequest("merge", config, 1, null, false), events::add);
    }

    /** base + 0.5 * (2/2) B1 A1 + 2 * (3/1) B2 A2, in float64. */
    private Mat expected() {
        return w.plus(f1.b().times(f1.a()).scale(0.5)).plus(f2.b().times(f2.a()).scale(6.0));
    }

    private static void assertClose(Mat want, float[] got) {
        for (int i = 0; i < got.length; i++) {
            assertEquals(want.v()[i], got[i], 1e-5 * Math.max(1, Math.abs(want.v()[i])), "[" + i + "]");
        }
    }

    @Test
    void sumIsTheDefaultAndSkipsWhenNothingChanged() throws Exception {
        Path out = dir.resolve("sum.safetensors");
        ObjectNode c = config(null, out);
        c.put("base", basePath.toString());
        List<Event> events = new ArrayList<>();
        Map<String, Object> result = run(c, events);
        assertEquals("sum", result.get("combination"));
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            assertClose(expected(), got.readFloats(Q + ".weight"));
        }
        events.clear();
        run(c, events);
        assertTrue(events.stream().anyMatch(e -> MergeGoal.UP_TO_DATE.equals(e.message())), events.toString());
    }

    @Test
    void methodCombinationRunsARegisteredMergeMethodOnTheUpdates() throws Exception {
        Path out = dir.resolve("method.safetensors");
        ObjectNode c = config(null, out);
        c.put("base", basePath.toString());
        c.put("method", "test-linear");
        c.putObject("params").put("normalize", "false");
        assertEquals("method", run(c, new ArrayList<>()).get("combination"));
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            // An unnormalized weighted sum of task vectors over a zero base is exactly the sum combination.
            assertClose(expected(), got.readFloats(Q + ".weight"));
            assertEquals("test-linear", got.metadata().get("kiln.lora.combination"));
        }
    }

    @Test
    void catWritesAnAdapterFolderThatMergesToTheSameModel() throws Exception {
        Path out = dir.resolve("soup");
        Map<String, Object> result = run(config("cat", out), new ArrayList<>());
        assertEquals(3, result.get("rank"));
        assertEquals(out.resolve("adapter_model.safetensors").toString(), result.get("output"));
        Path merged = dir.resolve("from-cat.safetensors");
        try (LoraAdapter cat = LoraAdapter.read(out)) {
            assertEquals(3, cat.r());
            LoraMerge.mergeIntoBase(basePath, cat, 1.0, merged);
        }
        try (SafetensorsReader got = SafetensorsReader.open(merged)) {
            assertClose(expected(), got.readFloats(Q + ".weight"));
        }
    }

    @Test
    void badCombinationsAreRefusedBeforeAnythingIsWritten() throws Exception {
        Path out = dir.resolve("x.safetensors");
        ObjectNode noBase = config("sum", out);
        String m = assertThrows(KilnException.class, () -> run(noBase, new ArrayList<>())).getMessage();
        assertTrue(m.contains("needs <base>"), m);

        ObjectNode catBase = config("cat", dir.resolve("soup"));
        catBase.put("base", basePath.toString());
        m = assertThrows(KilnException.class, () -> run(catBase, new ArrayList<>())).getMessage();
        assertTrue(m.contains("takes no <base>"), m);

        ObjectNode catFile = config("cat", out);
        m = assertThrows(KilnException.class, () -> run(catFile, new ArrayList<>())).getMessage();
        assertTrue(m.contains("folder"), m);

        ObjectNode unknown = config("svd", out);
        unknown.put("base", basePath.toString());
        m = assertThrows(KilnException.class, () -> run(unknown, new ArrayList<>())).getMessage();
        assertTrue(m.contains("'svd'") && m.contains("cat"), m);

        ObjectNode misspelt = config(null, out);
        misspelt.put("base", basePath.toString());
        misspelt.put("method", "test-lienar");
        m = assertThrows(KilnException.class, () -> run(misspelt, new ArrayList<>())).getMessage();
        assertTrue(m.contains("test-linear"), m);

        ObjectNode both = config(null, out);
        both.put("base", basePath.toString());
        both.putArray("models").addObject().put("path", basePath.toString());
        m = assertThrows(KilnException.class, () -> run(both, new ArrayList<>())).getMessage();
        assertTrue(m.contains("not both"), m);
        assertFalse(Files.exists(out));
        assertFalse(Files.exists(dir.resolve("soup")));
    }
}
