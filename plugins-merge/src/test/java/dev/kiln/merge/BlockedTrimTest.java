package dev.kiln.merge;

import static dev.kiln.merge.Fixture.assertClose;
import static dev.kiln.merge.Fixture.filled;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MagnitudeCut;
import dev.kiln.spi.merge.MagnitudeRanks;
import dev.kiln.spi.merge.MagnitudeTrim;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * ties and breadcrumbs merged in row blocks with ranks over the whole scope, as the core hands them out: the result
 * equals the whole-tensor merge bit for bit (tensor scope) and the float64 reference of TIES over the concatenated
 * model (model scope). The ranks here come from a plain Java sort of the float32 magnitudes, independent of the core's
 * threshold search (which has its own test against the same kind of sort).
 */
class BlockedTrimTest {
    static NDManager manager;

    @BeforeAll
    static void start() {
        manager = NDManager.newBaseManager();
    }

    @AfterAll
    static void stop() {
        manager.close();
    }

    /**
     * Ranks over a scope of float32 magnitudes (one array per model, flat scope order), for the block starting at
     * {@code blockStart}: the k-th largest by a sort, the quota of equal elements, and the equal ones before the block.
     */
    static MagnitudeRanks referenceRanks(float[][] magnitudes, long blockStart) {
        return new MagnitudeRanks() {
            @Override
            public long scopeElements() {
                return magnitudes[0].length;
            }

            @Override
            public NDArray largest(int model, long k, NDArray magnitude) {
                float[] all = magnitudes[model];
                float[] sorted = all.clone();
                Arrays.sort(sorted);
                int n = all.length;
                float t = k <= 0 || k >= n ? 0f : sorted[(int) (n - k)];
                long above = 0;
                long before = 0;
                for (int j = 0; j < n; j++) {
                    above += all[j] > t ? 1 : 0;
                    before += j < blockStart && all[j] == t ? 1 : 0;
                }
                return new MagnitudeCut(k, n, t, k - above).select(magnitude, before);
            }
        };
    }

    /** |model - base| in float32 for every model, over the concatenation of {@code parts}. */
    static float[][] magnitudes(Fixture... parts) {
        int n = parts[0].models.length;
        float[][] out = new float[n][];
        for (int i = 0; i < n; i++) {
            List<Float> values = new ArrayList<>();
            for (Fixture f : parts) {
                for (int j = 0; j < f.base.length; j++) {
                    values.add(Math.abs((float) f.models[i][j] - (float) f.base[j]));
                }
            }
            out[i] = new float[values.size()];
            for (int j = 0; j < values.size(); j++) {
                out[i][j] = values.get(j);
            }
        }
        return out;
    }

    /** Merges {@code f} (shape rows x cols) in blocks of {@code rowsPerBlock} rows; returns the float32 results. */
    static float[] blocked(MergeMethod method, Fixture f, int rows, int cols, int rowsPerBlock, float[][] scope,
            long scopeOffset) {
        float[] out = new float[rows * cols];
        for (int r0 = 0; r0 < rows; r0 += rowsPerBlock) {
            int r1 = Math.min(rows, r0 + rowsPerBlock);
            int from = r0 * cols;
            int to = r1 * cols;
            Shape shape = new Shape(r1 - r0, cols);
            try (NDManager block = manager.newSubManager()) {
                List<ModelTensor> tensors = new ArrayList<>();
                for (int i = 0; i < f.models.length; i++) {
                    tensors.add(new ModelTensor(Fixture.array(block, Arrays.copyOfRange(f.models[i], from, to),
                            shape), f.weights[i], Map.of(), null));
                }
                NDArray base = Fixture.array(block, Arrays.copyOfRange(f.base, from, to), shape);
                NDArray merged = method.merge(new MergeInput("w", base, tensors, new SplittableRandom(1),
                        referenceRanks(scope, scopeOffset + from)));
                System.arraycopy(merged.toFloatArray(), 0, out, from, to - from);
            }
        }
        return out;
    }

    static float[] whole(MergeMethod method, Fixture f, Shape shape) {
        double[] got = f.run(manager, method, shape);
        float[] out = new float[got.length];
        for (int j = 0; j < got.length; j++) {
            out[j] = (float) got[j];
        }
        return out;
    }

    static void assertBitEqual(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what);
        for (int j = 0; j < expected.length; j++) {
            assertEquals(Float.floatToRawIntBits(expected[j]), Float.floatToRawIntBits(actual[j]),
                    what + " [" + j + "]: " + expected[j] + " vs " + actual[j]);
        }
    }

    /**
     * The float factors equal the boolean selection on every block of a scope with many equal magnitudes: blocks whose
     * equal elements are all kept, none kept, or cut by the quota, with the block's equal count known or not.
     */
    @Test
    void selectAsFloatEqualsTheBooleanSelection() {
        java.util.Random random = new java.util.Random(7);
        int n = 240;
        float[] all = new float[n];
        for (int j = 0; j < n; j++) {
            all[j] = random.nextInt(12) / 4f;
        }
        float[] sorted = all.clone();
        Arrays.sort(sorted);
        int checked = 0;
        for (long k : new long[] {0, 1, 17, 60, 119, 200, 239, 240}) {
            float t = k <= 0 || k >= n ? 0f : sorted[(int) (n - k)];
            long above = 0;
            for (float v : all) {
                above += v > t ? 1 : 0;
            }
            MagnitudeCut cut = new MagnitudeCut(k, n, t, k - above);
            for (int block = 0; block < n; block += 40) {
                long before = 0;
                long inBlock = 0;
                for (int j = 0; j < block + 40; j++) {
                    before += j < block && all[j] == t ? 1 : 0;
                    inBlock += j >= block && all[j] == t ? 1 : 0;
                }
                try (NDManager scope = manager.newSubManager()) {
                    NDArray values = scope.create(Arrays.copyOfRange(all, block, block + 40), new Shape(5, 8));
                    for (long known : new long[] {inBlock, -1}) {
                        float[] want = cut.select(values, before, known).toType(DataType.FLOAT32, false)
                                .toFloatArray();
                        NDArray got = cut.selectAsFloat(values, before, known);
                        assertEquals(DataType.FLOAT32, got.getDataType());
                        assertEquals(values.getShape(), got.getShape());
                        assertBitEqual(want, got.toFloatArray(), "k=" + k + " block " + block + " known " + known);
                        checked++;
                    }
                }
            }
        }
        assertEquals(8 * 6 * 2, checked);
    }

    @Test
    void blockedTiesAndBreadcrumbsEqualTheWholeTensorMergeBitForBit() {
        // 6 x 7 tensors; coarse grids make many equal magnitudes, so the threshold's ties straddle blocks.
        List<Fixture> fixtures = TaskVectorMethodsTest.scenarios();
        assertTrue(fixtures.get(1).hasMagnitudeTies());
        List<Map<String, String>> ties = List.of(Map.of("density", "0.5"), Map.of("density", "0.3",
                "sign-method", "count"), Map.of("density", "0.02"), Map.of("density", "1.0"),
                Map.of("density", "0.7", "normalize", "false", "lambda", "0.8"));
        List<Map<String, String>> crumbs = List.of(Map.of("density", "0.5", "gamma", "0.1"),
                Map.of("density", "0.9", "gamma", "0.2", "consensus", "ties"), Map.of("density", "0.4",
                        "gamma", "0"));
        for (Fixture f : fixtures) {
            float[][] scope = magnitudes(f);
            for (int rowsPerBlock : new int[] {1, 2, 4}) {
                for (Map<String, String> p : ties) {
                    MergeMethod m = Fixture.method(MergeTechniques.ties(), p);
                    assertBitEqual(whole(m, f, TaskVectorMethodsTest.SHAPE), blocked(m, f, 6, 7, rowsPerBlock,
                            scope, 0), "ties " + p + " blocks of " + rowsPerBlock + " rows");
                }
                for (Map<String, String> p : crumbs) {
                    MergeMethod m = Fixture.method(MergeTechniques.breadcrumbs(), p);
                    assertBitEqual(whole(m, f, TaskVectorMethodsTest.SHAPE), blocked(m, f, 6, 7, rowsPerBlock,
                            scope, 0), "breadcrumbs " + p + " blocks of " + rowsPerBlock + " rows");
                }
            }
        }
    }

    @Test
    void modelScopeTiesMatchesTheFloat64ReferenceOverTheConcatenatedModel() {
        // Two tensors of one model, 6 x 7 and 4 x 5, ranked together: after the global trim every step of TIES is
        // per element, so the reference is TIES over the concatenation of the two tensors.
        Fixture a = Fixture.random(21, 3, 42, 0.25, 0.2, true);
        Fixture b = Fixture.random(22, 3, 20, 1.0 / 64, 0.1, true);
        b = new Fixture(b.base, b.models, a.weights);
        float[][] scope = magnitudes(a, b);
        for (String density : new String[] {"0.1", "0.35", "0.8"}) {
            MergeMethod m = Fixture.method(MergeTechniques.ties(), Map.of("density", density,
                    "trim-scope", "model"));
            assertEquals(MagnitudeTrim.TrimScope.MODEL, ((MagnitudeTrim) m).trimScope());
            float[] gotA = blocked(m, a, 6, 7, 2, scope, 0);
            float[] gotB = blocked(m, b, 4, 5, 3, scope, 42);
            double[] got = new double[62];
            for (int j = 0; j < 42; j++) {
                got[j] = gotA[j];
            }
            for (int j = 0; j < 20; j++) {
                got[42 + j] = gotB[j];
            }
            double[] base = concat(a.base, b.base);
            double[][] models = new double[3][];
            for (int i = 0; i < 3; i++) {
                models[i] = concat(a.models[i], b.models[i]);
            }
            double[] want = Reference.ties(base, models, a.weights, filled(3, Double.parseDouble(density)), false,
                    true, 1);
            assertClose(want, got, "ties trim-scope=model density " + density);
            // Per-tensor trimming would keep a different set: the test must be able to tell the two apart.
            double[] perTensor = concat(Reference.ties(a.base, a.models, a.weights, filled(3,
                    Double.parseDouble(density)), false, true, 1), Reference.ties(b.base, b.models, a.weights,
                    filled(3, Double.parseDouble(density)), false, true, 1));
            assertTrue(!Arrays.equals(perTensor, want), "density " + density + " cannot tell the scopes apart");
        }
    }

    @Test
    void modelScopeWithoutRanksFailsNamingTheTensor() {
        Fixture f = TaskVectorMethodsTest.scenarios().get(1);
        MergeMethod m = Fixture.method(MergeTechniques.ties(), Map.of("density", "0.5", "trim-scope", "model"));
        KilnException e = assertThrows(KilnException.class, () -> f.run(manager, m, TaskVectorMethodsTest.SHAPE));
        assertTrue(e.getMessage().contains("'layers.0.weight'") && e.getMessage().contains("trim-scope=model"),
                e.getMessage());
    }

    @Test
    void keepCountsFollowDensityAndGammaAndNameTheScopeOnABadOverride() {
        MagnitudeTrim ties = (MagnitudeTrim) Fixture.method(MergeTechniques.ties(), Map.of("density", "0.2"));
        assertEquals(MagnitudeTrim.TrimScope.TENSOR, ties.trimScope());
        assertEquals(List.of(20L), box(ties.keepCounts(0, Map.of(), 100, "tensor 'w'")));
        assertEquals(List.of(50L), box(ties.keepCounts(0, Map.of("density", 0.5), 100, "tensor 'w'")));
        MagnitudeTrim crumbs = (MagnitudeTrim) Fixture.method(MergeTechniques.breadcrumbs(), Map.of("density",
                "0.9", "gamma", "0.2"));
        // keep 90, drop top 20 -> no room: top becomes 10, bottom 0 -> {100 - 0, 10}
        assertEquals(List.of(100L, 10L), box(crumbs.keepCounts(0, Map.of(), 100, "tensor 'w'")));
        KilnException e = assertThrows(KilnException.class, () -> ties.keepCounts(1, Map.of("density", 1.5), 100,
                "the whole model"));
        assertTrue(e.getMessage().contains("the whole model") && e.getMessage().contains("model 1"), e.getMessage());
        assertTrue(!(Fixture.method(MergeTechniques.dare(), Map.of()) instanceof MagnitudeTrim),
                "dare draws random masks; it has no magnitude ranks");
    }

    private static List<Long> box(long[] values) {
        List<Long> out = new ArrayList<>();
        for (long v : values) {
            out.add(v);
        }
        return out;
    }

    private static double[] concat(double[] x, double[] y) {
        double[] out = Arrays.copyOf(x, x.length + y.length);
        System.arraycopy(y, 0, out, x.length, y.length);
        return out;
    }
}
