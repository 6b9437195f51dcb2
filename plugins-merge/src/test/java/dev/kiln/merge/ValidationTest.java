package dev.kiln.merge;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Discovery, parameter validation, input checks with clear messages, and that inputs are left alone. */
class ValidationTest {
    static NDManager manager;
    static final List<String> IDS = List.of("linear", "task-arithmetic", "ties", "dare", "breadcrumbs", "slerp",
            "model-stock", "fisher", "pcb");
    static final Set<String> NEED_BASE = Set.of("task-arithmetic", "ties", "dare", "breadcrumbs", "model-stock",
            "pcb");

    @BeforeAll
    static void start() {
        manager = NDManager.newBaseManager();
    }

    @AfterAll
    static void stop() {
        manager.close();
    }

    static Technique<?> technique(String id) {
        return new MergeTechniques().techniques().stream().filter(t -> t.id().equals(id)).findFirst().orElseThrow();
    }

    static MergeMethod method(String id) {
        return (MergeMethod) technique(id).create(Parameters.defaults(technique(id)));
    }

    @Test
    void providerIsDiscoveredWithAllMethods() {
        Registry registry = Registry.discover(getClass().getClassLoader());
        Set<String> found = registry.all(Kind.MERGE).stream().map(Technique::id).collect(Collectors.toSet());
        assertTrue(found.containsAll(IDS), "found " + found);
        for (String id : IDS) {
            Technique<?> t = registry.find(Kind.MERGE, id);
            assertFalse(t.summary().isEmpty(), id);
            assertFalse(t.reference().isEmpty(), id);
            assertTrue(registry.create(Kind.MERGE, MergeMethod.class, id, Map.of()) != null, id);
        }
    }

    @Test
    void badParametersAreRejectedByBind() {
        Object[][] bad = {
            {"ties", "density", "0"}, {"ties", "density", "1.5"}, {"ties", "sign-method", "mass"},
            {"ties", "lambda", "abc"}, {"dare", "rescale", "sqrt"}, {"dare", "consensus", "dare"},
            {"dare", "density", "-0.1"}, {"breadcrumbs", "gamma", "1.2"}, {"slerp", "t", "2"},
            {"fisher", "epsilon", "0"}, {"pcb", "ratio", "0"}, {"pcb", "clip-ratio", "0.5"},
            {"pcb", "temperature", "-1"}, {"linear", "normalize", "maybe"}, {"model-stock", "filter-wise", "2"},
            {"task-arithmetic", "lambda", "inf"}, {"ties", "densty", "0.5"}};
        for (Object[] b : bad) {
            KilnException e = assertThrows(KilnException.class,
                    () -> Parameters.bind(technique((String) b[0]), Map.of((String) b[1], (String) b[2])),
                    b[0] + " " + b[1] + "=" + b[2]);
            assertTrue(e.getMessage().contains((String) b[1]) || e.getMessage().contains("densty"), e.getMessage());
        }
    }

    @Test
    void baseRequirementIsDeclaredAndChecked() {
        try (NDManager m = manager.newSubManager()) {
            NDArray x = m.create(new float[] {1, 2, 3});
            for (String id : IDS) {
                MergeMethod method = method(id);
                assertEquals(NEED_BASE.contains(id), method.requiresBase(), id);
                if (method.requiresBase()) {
                    KilnException e = assertThrows(KilnException.class, () -> method.merge(new MergeInput(
                            "blocks.3.attn.qkv.weight", null, List.of(ModelTensor.of(x), ModelTensor.of(x)),
                            new SplittableRandom(1))), id);
                    assertTrue(e.getMessage().contains("blocks.3.attn.qkv.weight") && e.getMessage().contains(id),
                            e.getMessage());
                }
            }
        }
    }

    @Test
    void shapeMismatchNamesTensorAndShapes() {
        try (NDManager m = manager.newSubManager()) {
            NDArray a = m.zeros(new Shape(2, 3));
            NDArray b = m.zeros(new Shape(3, 2));
            for (String id : IDS) {
                KilnException e = assertThrows(KilnException.class, () -> method(id).merge(new MergeInput(
                        "embed.weight", a, List.of(new ModelTensor(a, 1, Map.of(), a), new ModelTensor(b, 1,
                                Map.of(), b)), new SplittableRandom(1))), id);
                assertTrue(e.getMessage().contains("embed.weight") && e.getMessage().contains("(2, 3)")
                        && e.getMessage().contains("(3, 2)"), e.getMessage());
            }
            KilnException base = assertThrows(KilnException.class, () -> method("ties").merge(new MergeInput(
                    "embed.weight", b, List.of(ModelTensor.of(a)), new SplittableRandom(1))));
            assertTrue(base.getMessage().contains("base") && base.getMessage().contains("(3, 2)"), base.getMessage());
            NDArray half = m.zeros(new Shape(2, 3), DataType.FLOAT16);
            KilnException dtype = assertThrows(KilnException.class, () -> method("linear").merge(new MergeInput(
                    "embed.weight", null, List.of(ModelTensor.of(a), ModelTensor.of(half)), new SplittableRandom(1))));
            assertTrue(dtype.getMessage().contains("float16") && dtype.getMessage().contains("model 1"),
                    dtype.getMessage());
        }
    }

    @Test
    void methodSpecificInputErrors() {
        try (NDManager m = manager.newSubManager()) {
            NDArray x = m.create(new float[] {1, 2, 3});
            NDArray y = m.create(new float[] {3, 2, 1});
            ModelTensor noStat = ModelTensor.of(x);
            assertMessage(() -> method("fisher").merge(new MergeInput("t.fisher", null,
                    List.of(new ModelTensor(y, 1, Map.of(), x), noStat), new SplittableRandom(1))),
                    "t.fisher", "model 1", "statistic");
            assertMessage(() -> method("slerp").merge(new MergeInput("t.slerp", null,
                    List.of(noStat, noStat, noStat), new SplittableRandom(1))), "t.slerp", "3");
            assertMessage(() -> method("model-stock").merge(new MergeInput("t.stock", y, List.of(noStat),
                    new SplittableRandom(1))), "t.stock", "two");
            assertMessage(() -> method("ties").merge(new MergeInput("t.override", y,
                    List.of(new ModelTensor(x, 1, Map.of("density", 1.5), null)), new SplittableRandom(1))),
                    "t.override", "density", "1.5", "model 0");
            assertMessage(() -> method("linear").merge(new MergeInput("t.weights", null,
                    List.of(new ModelTensor(x, 1, Map.of(), null), new ModelTensor(y, -1, Map.of(), null)),
                    new SplittableRandom(1))), "t.weights", "sum to 0");
            assertMessage(() -> method("linear").merge(new MergeInput("t.none", null, List.of(),
                    new SplittableRandom(1))), "t.none", "no models");
        }
    }

    private static void assertMessage(org.junit.jupiter.api.function.Executable call, String... parts) {
        KilnException e = assertThrows(KilnException.class, call);
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), "'" + part + "' missing from: " + e.getMessage());
        }
    }

    @Test
    void inputsAreNotModifiedOrReleasedAndResultBelongsToCaller() {
        try (NDManager m = manager.newSubManager()) {
            float[] base = {0.5f, -1, 2, 0, 3, -0.25f};
            float[] one = {1, -2, 2.5f, 0.5f, 3, 0};
            float[] two = {-1, 1, 2, 0.25f, 4, -1};
            NDArray b = m.create(base, new Shape(2, 3));
            NDArray x = m.create(one, new Shape(2, 3));
            NDArray y = m.create(two, new Shape(2, 3));
            NDArray fx = m.ones(new Shape(2, 3));
            for (String id : IDS) {
                Technique<?> t = technique(id);
                MergeMethod method = (MergeMethod) t.create(Parameters.defaults(t));
                // the base also passed as a model: the same array twice must survive the scratch manager
                List<ModelTensor> models = id.equals("slerp") ? List.of(new ModelTensor(x, 1, Map.of(), fx),
                        new ModelTensor(b, 1, Map.of(), fx)) : List.of(new ModelTensor(x, 1, Map.of(), fx),
                        new ModelTensor(y, 1, Map.of(), fx), new ModelTensor(b, 1, Map.of(), fx));
                NDArray result = method.merge(new MergeInput("w", b, models, new SplittableRandom(3)));
                assertSame(m, result.getManager(), id + ": result belongs to the caller's manager");
                for (NDArray input : List.of(b, x, y, fx)) {
                    assertFalse(input.isReleased(), id);
                    assertSame(m, input.getManager(), id + ": input returned to its manager");
                }
                assertArrayEquals(base, b.toFloatArray(), id);
                assertArrayEquals(one, x.toFloatArray(), id);
                assertArrayEquals(two, y.toFloatArray(), id);
                assertArrayEquals(new float[] {1, 1, 1, 1, 1, 1}, fx.toFloatArray(), id);
                result.close();
            }
        }
    }
}
