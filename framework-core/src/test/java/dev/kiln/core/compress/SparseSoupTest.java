package dev.kiln.core.compress;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class SparseSoupTest {
    private static final List<String> PRUNABLE = List.of("conv1.weight", "conv2.weight", "fc1.weight",
            "fc.weight");
    private static ImageDataset train;
    private static ImageDataset tune;
    private static ImageDataset test;
    private static Map<String, float[]> trained;

    @BeforeAll
    static void trainTinyCnn() {
        LabeledData data = (LabeledData) Datasets.open(Path.of("..", "data", "fashion-mnist-mini"));
        train = data.train().shuffled(8).head(480);
        tune = train.head(128);
        test = data.test().shuffled(9).head(200);
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingResult result = new TrainingRun(config().epochs(1).seed(5).build(), train, test, null)
                    .run(manager);
            trained = new LinkedHashMap<>();
            result.model().parameters().forEach((n, p) -> trained.put(n, p.getArray().toFloatArray()));
        }
    }

    private static TrainingConfig.Builder config() {
        return TrainingConfig.builder("cnn").modelParameters(Map.of("width", "4", "hidden", "16")).batchSize(32)
                .learningRate(0.02).threads(1);
    }

    private static Map<String, NDArray> start(NDManager manager) {
        try (NDManager m = NDManager.newBaseManager()) {
            TrainingResult shapes = new TrainingRun(config().epochs(1).build(), train.head(32), null, null).run(m);
            Map<String, NDArray> out = new LinkedHashMap<>();
            shapes.model().parameters().forEach((n, p) -> {
                NDArray a = manager.create(trained.get(n), p.getArray().getShape());
                out.put(n, a);
            });
            return out;
        }
    }

    /** The keep-mask of the largest round(density * n) |w| over the given values, in float64 Java. */
    private static boolean[] referenceKeep(double[] abs, double density) {
        double[] sorted = abs.clone();
        Arrays.sort(sorted);
        int keep = (int) Math.round(density * abs.length);
        double threshold = keep == 0 ? Double.POSITIVE_INFINITY : sorted[abs.length - keep];
        boolean[] kept = new boolean[abs.length];
        for (int i = 0; i < abs.length; i++) {
            kept[i] = abs[i] >= threshold;
        }
        return kept;
    }

    private static double[] abs(float[] values) {
        double[] out = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = Math.abs(values[i]);
        }
        return out;
    }

    @Test
    void perTensorSoupKeepsExactlyTheMasksZeros() {
        SparseSoup soup = new SparseSoup(CompressTestTechniques.registry(), new SparseSoup.Settings(0.6, false, 2,
                2, config().epochs(1).build()));
        try (NDManager manager = NDManager.newBaseManager()) {
            SparseSoup.Result result = soup.run(start(manager), tune, test, manager);
            assertEquals(PRUNABLE, new ArrayList<>(result.masks().keySet()));
            assertEquals(2, result.rounds().size());
            assertEquals(0.3, result.rounds().get(0).sparsity(), 1e-12);
            assertEquals(0.6, result.rounds().get(1).sparsity(), 1e-12);
            for (SparseSoup.Round round : result.rounds()) {
                assertEquals(2, round.ingredientAccuracies().size());
                assertTrue(round.soupAccuracy() > 0.2, round.toString());
            }
            for (String name : PRUNABLE) {
                float[] mask = result.masks().get(name).toFloatArray();
                float[] w = result.parameters().get(name).toFloatArray();
                long kept = 0;
                for (int i = 0; i < w.length; i++) {
                    assertTrue(mask[i] == 0f || mask[i] == 1f);
                    if (mask[i] == 0f) {
                        assertEquals(0f, w[i], 0f, name + "[" + i + "] is pruned but not zero");
                    } else {
                        kept++;
                        assertTrue(w[i] != 0f, name + "[" + i + "] is kept but zero");
                    }
                }
                assertEquals(Math.round(0.4 * w.length), kept, name);
            }
            // Biases and norms stay dense; fine-tuning changed them.
            assertTrue(result.parameters().get("fc.bias").countNonzero().getLong() > 0);
        }
    }

    @Test
    void globalPruningUsesOneThresholdAcrossTensors() {
        SparseSoup soup = new SparseSoup(CompressTestTechniques.registry(), new SparseSoup.Settings(0.7, true, 1,
                1, config().epochs(1).build()));
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, NDArray> start = start(manager);
            Map<String, NDArray> masks = soup.masks(start, 0.7, manager);
            List<Double> all = new ArrayList<>();
            for (String name : PRUNABLE) {
                for (double a : abs(trained.get(name))) {
                    all.add(a);
                }
            }
            boolean[] keep = referenceKeep(all.stream().mapToDouble(Double::doubleValue).toArray(), 0.3);
            int offset = 0;
            long keptTotal = 0;
            List<Double> densities = new ArrayList<>();
            for (String name : PRUNABLE) {
                float[] mask = masks.get(name).toFloatArray();
                long kept = 0;
                for (int i = 0; i < mask.length; i++) {
                    assertEquals(keep[offset + i] ? 1f : 0f, mask[i], 0f, name + "[" + i + "]");
                    kept += (long) mask[i];
                }
                densities.add((double) kept / mask.length);
                keptTotal += kept;
                offset += mask.length;
            }
            assertEquals(Math.round(0.3 * all.size()), keptTotal);
            // One global threshold leaves tensors at different densities, unlike per-tensor pruning.
            assertTrue(densities.stream().distinct().count() > 1, densities.toString());

            SparseSoup.Result result = soup.run(start, tune, null, manager);
            for (String name : PRUNABLE) {
                NDArray w = result.parameters().get(name);
                NDArray m = result.masks().get(name);
                assertEquals(0L, w.mul(m.sub(1f)).countNonzero().getLong(), name);
                assertEquals(m.countNonzero().getLong(), w.countNonzero().getLong(), name);
            }
        }
    }

    @Test
    void stepHookRunsAfterEveryStepAndFineTuningStartsFromTheGivenParameters() {
        AtomicLong calls = new AtomicLong();
        List<Long> steps = new ArrayList<>();
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, NDArray> start = start(manager);
            TrainingConfig tiny = config().epochs(2).learningRate(1e-9).weightDecay(0).seed(77).build();
            TrainingResult result = new TrainingRun(tiny, tune, null, null).startingFrom(start)
                    .withStepHook((params, step) -> {
                        calls.incrementAndGet();
                        steps.add(step);
                    }).run(manager);
            assertEquals(2L * tune.batchCount(32), calls.get());
            assertEquals(0L, steps.get(0));
            assertEquals(calls.get() - 1, steps.get(steps.size() - 1));
            for (String name : PRUNABLE) {
                float[] got = result.model().parameters().get(name).getArray().toFloatArray();
                float[] want = trained.get(name);
                for (int i = 0; i < got.length; i++) {
                    assertEquals(want[i], got[i], 1e-6f, name);
                }
            }
        }
    }

    @Test
    void ingredientsCanEachHaveTheirOwnAugmentation() {
        // Pass-through augmentations that count the batches they see: ingredient i trains with list i mod 2, so with
        // three ingredients the first list serves ingredients 0 and 2 and the second only ingredient 1.
        AtomicLong first = new AtomicLong();
        AtomicLong second = new AtomicLong();
        dev.kiln.spi.augment.Augmentation a = (batch, ctx) -> {
            first.incrementAndGet();
            return new dev.kiln.spi.augment.MixedBatch(batch.inputs(), batch.softTargets());
        };
        dev.kiln.spi.augment.Augmentation b = (batch, ctx) -> {
            second.incrementAndGet();
            return new dev.kiln.spi.augment.MixedBatch(batch.inputs(), batch.softTargets());
        };
        SparseSoup soup = new SparseSoup(CompressTestTechniques.registry(), new SparseSoup.Settings(0.5, false, 3,
                1, config().epochs(1).build(), List.of(List.of(a), List.of(b))));
        try (NDManager manager = NDManager.newBaseManager()) {
            soup.run(start(manager), tune, null, manager);
        }
        long steps = tune.batchCount(32);
        assertEquals(2 * steps, first.get());
        assertEquals(steps, second.get());
    }

    @Test
    void badSettingsFailNamingTheSetting() {
        TrainingConfig ok = config().build();
        assertTrue(assertThrows(KilnException.class, () -> new SparseSoup.Settings(1.0, false, 2, 1, ok))
                .getMessage().contains("sparsity 1.0"));
        assertTrue(assertThrows(KilnException.class, () -> new SparseSoup.Settings(0.5, false, 0, 1, ok))
                .getMessage().contains("ingredients 0"));
        assertTrue(assertThrows(KilnException.class, () -> new SparseSoup.Settings(0.5, false, 2, 0, ok))
                .getMessage().contains("rounds 0"));
    }
}
