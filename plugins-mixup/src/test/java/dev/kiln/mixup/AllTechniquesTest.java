package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
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
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixedBatch;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/** The contract every technique of the jar keeps, run against each of them. */
class AllTechniquesTest {
    static final List<String> IDS = List.of("mixup", "cutmix", "fmix", "resizemix", "mixup-cutmix", "decoupled");
    private static final int K = 5;
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    static Stream<String> ids() {
        return IDS.stream();
    }

    /** Each technique in every mode it offers. */
    static Stream<Arguments> variants() {
        return IDS.stream().flatMap(id -> {
            boolean hasMode = Fixtures.technique(id).parameters().stream().anyMatch(p -> p.name().equals("mode"));
            Stream<Arguments> base = Stream.of(Arguments.of(id, Map.of()),
                    Arguments.of(id, Map.of("pairing", "flip")),
                    Arguments.of(id, Map.of("pairing", "permute")));
            return hasMode ? Stream.concat(base, Stream.of(Arguments.of(id, Map.of("mode", "elem")))) : base;
        });
    }

    private NDArray images(long seed, int n, DataType dtype) {
        return Fixtures.images(manager, new Random(seed), n, 2, 6, 9).toType(dtype, false);
    }

    private NDArray labels(int n) {
        long[] y = new long[n];
        for (int i = 0; i < n; i++) {
            y[i] = (i * 3L) % K;
        }
        return manager.create(y);
    }

    @Test
    void providerIsDiscoveredWithEveryTechnique() {
        Registry registry = Registry.discover(getClass().getClassLoader());
        for (String id : IDS) {
            Technique<?> t = registry.find(Kind.AUGMENT, id);
            assertEquals(id, t.id());
            assertFalse(t.summary().isEmpty());
            assertFalse(t.reference().isEmpty());
            assertTrue(t.parameters().stream().anyMatch(p -> p.name().equals("stop-epoch")), id);
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void targetsSumToOneShapesAndDtypesKept(String id, Map<String, String> params) {
        for (DataType dtype : List.of(DataType.FLOAT32, DataType.FLOAT16, DataType.FLOAT64)) {
            for (int n : new int[] {1, 2, 5, 8}) {
                try (NDManager sub = manager.newSubManager()) {
                    NDArray x = images(n, n, dtype);
                    x.attach(sub);
                    NDArray y = labels(n);
                    y.attach(sub);
                    double[] before = Fixtures.host(x);
                    MixedBatch out = Fixtures.create(id, params).mix(new Batch(x, y, K), Fixtures.context(n));
                    assertEquals(x.getShape(), out.inputs().getShape(), id);
                    assertEquals(dtype, out.inputs().getDataType(), id);
                    assertEquals(new Shape(n, K), out.targets().getShape());
                    assertEquals(DataType.FLOAT32, out.targets().getDataType());
                    for (double[] row : Fixtures.rows(out.targets())) {
                        double sum = 0;
                        for (double v : row) {
                            assertTrue(v >= 0, id + " target " + v);
                            sum += v;
                        }
                        assertEquals(1.0, sum, 1e-5, id + " row sum, n=" + n + " " + dtype);
                    }
                    assertArrayEquals(before, Fixtures.host(x), id + ": inputs are left unchanged");
                    for (double v : Fixtures.host(out.inputs())) {
                        assertTrue(Double.isFinite(v));
                    }
                    if (n == 1 && !id.equals("resizemix")) {
                        // a lone sample is its own partner: mixing with itself changes nothing (ResizeMix still
                        // pastes a shrunken copy of the image onto itself, which is fine: the label is unchanged)
                        assertArrayEquals(before, Fixtures.host(out.inputs()), 1e-3, id + " batch of 1");
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("variants")
    void sameSeedGivesTheSameBatchAndOtherSeedsDiffer(String id, Map<String, String> params) {
        NDArray x = images(3, 6, DataType.FLOAT32);
        NDArray y = labels(6);
        Augmentation aug = Fixtures.create(id, params);
        MixedBatch a = aug.mix(new Batch(x, y, K), Fixtures.context(123));
        MixedBatch b = aug.mix(new Batch(x, y, K), Fixtures.context(123));
        assertArrayEquals(Fixtures.host(a.inputs()), Fixtures.host(b.inputs()), id);
        assertArrayEquals(Fixtures.host(a.targets()), Fixtures.host(b.targets()), id);
        boolean anyDifferent = false;
        for (long seed = 1; seed < 6 && !anyDifferent; seed++) {
            MixedBatch c = aug.mix(new Batch(x, y, K), Fixtures.context(seed));
            anyDifferent = !java.util.Arrays.equals(Fixtures.host(a.targets()), Fixtures.host(c.targets()));
        }
        assertTrue(anyDifferent, id + ": the seed matters");
    }

    @ParameterizedTest
    @MethodSource("ids")
    void labelSmoothingValuesWhenStopped(String id) {
        // From stop-epoch on: unmixed inputs, smoothed one-hot targets: on = 1 - eps + eps/K, off = eps/K.
        double eps = 0.1;
        NDArray x = images(1, 4, DataType.FLOAT32);
        NDArray y = labels(4);
        Augmentation aug = Fixtures.create(id, Map.of("label-smoothing", "0.1", "stop-epoch", "3"));
        MixedBatch out = aug.mix(new Batch(x, y, K), Fixtures.context(5, 3));
        assertArrayEquals(Fixtures.host(x), Fixtures.host(out.inputs()), id + " unmixed after stop-epoch");
        assertNull(out.extraLoss());
        long[] labels = y.toLongArray();
        double[][] t = Fixtures.rows(out.targets());
        for (int i = 0; i < 4; i++) {
            for (int c = 0; c < K; c++) {
                double expected = c == labels[i] ? 1 - eps + eps / K : eps / K;
                assertEquals(expected, t[i][c], 1e-6, id);
            }
        }
        // before stop-epoch the batch is mixed
        MixedBatch early = aug.mix(new Batch(x, y, K), Fixtures.context(5, 2));
        assertFalse(java.util.Arrays.equals(Fixtures.host(x), Fixtures.host(early.inputs())), id + " mixes early");
    }

    @ParameterizedTest
    @MethodSource("ids")
    void smoothingIsAppliedBeforeMixing(String id) {
        // lam * smooth(y_i) + (1 - lam) * smooth(y_j): no entry can fall below eps/K and rows still sum to 1.
        double eps = 0.2;
        NDArray x = images(2, 6, DataType.FLOAT32);
        MixedBatch out = Fixtures.create(id, Map.of("label-smoothing", "0.2"))
                .mix(new Batch(x, labels(6), K), Fixtures.context(8));
        for (double[] row : Fixtures.rows(out.targets())) {
            double sum = 0;
            for (double v : row) {
                assertTrue(v >= eps / K - 1e-6, id + " entry " + v);
                sum += v;
            }
            assertEquals(1.0, sum, 1e-5);
        }
    }

    @ParameterizedTest
    @MethodSource("ids")
    void softLabelsAreMixedToo(String id) {
        NDArray x = images(4, 4, DataType.FLOAT32);
        NDArray soft = manager.create(new float[] {
            0.5f, 0.5f, 0, 0, 0,
            0, 1, 0, 0, 0,
            0.2f, 0.2f, 0.2f, 0.2f, 0.2f,
            0, 0, 0, 0.25f, 0.75f}, new Shape(4, K));
        float[] before = soft.toFloatArray();
        MixedBatch out = Fixtures.create(id, Map.of()).mix(new Batch(x, soft, K), Fixtures.context(1));
        for (double[] row : Fixtures.rows(out.targets())) {
            assertEquals(1.0, java.util.Arrays.stream(row).sum(), 1e-5);
        }
        assertArrayEquals(before, soft.toFloatArray(), 0f, "labels untouched");
    }

    @ParameterizedTest
    @ValueSource(strings = {"mixup", "cutmix", "fmix", "decoupled"})
    void alphaMustBePositive(String id) {
        for (String bad : new String[] {"0", "-0.5"}) {
            KilnException e = assertThrows(KilnException.class,
                    () -> Parameters.bind(Fixtures.technique(id), Map.of("alpha", bad)));
            assertTrue(e.getMessage().contains("'alpha'") && e.getMessage().contains(bad), e.getMessage());
        }
    }

    @Test
    void otherBadParametersAreRejected() {
        assertThrows(KilnException.class,
                () -> Parameters.bind(Fixtures.technique("mixup-cutmix"), Map.of("mixup-alpha", "-1")));
        KilnException both = assertThrows(KilnException.class,
                () -> Fixtures.create("mixup-cutmix", Map.of("mixup-alpha", "0", "cutmix-alpha", "0")));
        assertTrue(both.getMessage().contains("mixup-alpha"), both.getMessage());
        KilnException scale = assertThrows(KilnException.class,
                () -> Fixtures.create("resizemix", Map.of("scale-min", "0.9", "scale-max", "0.2")));
        assertTrue(scale.getMessage().contains("scale-min"), scale.getMessage());
        assertThrows(KilnException.class,
                () -> Parameters.bind(Fixtures.technique("mixup"), Map.of("label-smoothing", "1.0")));
        assertThrows(KilnException.class,
                () -> Parameters.bind(Fixtures.technique("mixup"), Map.of("mode", "pair")));
        assertThrows(KilnException.class,
                () -> Parameters.bind(Fixtures.technique("cutmix"), Map.of("pairing", "roll")));
    }

    @ParameterizedTest
    @MethodSource("ids")
    void badBatchesGiveClearErrors(String id) {
        Augmentation aug = Fixtures.create(id, Map.of());
        NDArray x = images(1, 3, DataType.FLOAT32);
        assertMessage(aug, new Batch(x, manager.create(new long[] {0, 1, 7}), K), "labels", "7");
        assertMessage(aug, new Batch(x, manager.create(new long[] {0, 1}), K), "labels", "2");
        assertMessage(aug, new Batch(x.toType(DataType.INT32, false), labels(3), K), "inputs", "int32");
        assertMessage(aug, new Batch(x, manager.create(new float[] {0.5f, 0.9f, 0, 0, 0,
            1, 0, 0, 0, 0, 1, 0, 0, 0, 0}, new Shape(3, K)), K), "soft label", "row 0", "1.4");
        if (!id.equals("mixup") && !id.equals("decoupled")) {
            assertMessage(aug, new Batch(x.reshape(3, 108), labels(3), K), "inputs", "(3, 108)");
        }
    }

    private static void assertMessage(Augmentation aug, Batch batch, String... parts) {
        KilnException e = assertThrows(KilnException.class, () -> aug.mix(batch, Fixtures.context(1)));
        for (String part : parts) {
            assertTrue(e.getMessage().contains(part), "'" + e.getMessage() + "' should mention " + part);
        }
    }

    @ParameterizedTest
    @MethodSource("ids")
    void outputsBelongToTheCallersManagerAndInputsComeBack(String id) {
        try (NDManager caller = manager.newSubManager()) {
            NDArray x = images(6, 4, DataType.FLOAT32);
            x.attach(caller);
            NDArray y = labels(4);
            y.attach(caller);
            MixedBatch out = Fixtures.create(id, Map.of()).mix(new Batch(x, y, K), Fixtures.context(2));
            // the call's own scope is closed by now: inputs are back with their owner and still readable
            assertEquals(caller, x.getManager(), id);
            assertEquals(caller, y.getManager(), id);
            assertEquals(caller, out.inputs().getManager(), id);
            assertEquals(caller, out.targets().getManager(), id);
            assertEquals(4 * 2 * 6 * 9, x.toFloatArray().length);
            assertEquals(4 * K, out.targets().toFloatArray().length);
        }
    }

    @Test
    void everyParameterHasADoc() {
        Map<String, Integer> seen = new HashMap<>();
        for (Technique<?> t : new MixupTechniques().techniques()) {
            assertEquals(Kind.AUGMENT, t.kind());
            t.parameters().forEach(p -> assertFalse(p.doc().isEmpty(), t.id() + "." + p.name()));
            seen.merge(t.id(), 1, Integer::sum);
        }
        assertEquals(IDS.size(), seen.size());
    }
}
