package dev.kiln.core.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.MixedBatch;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainingRunTest {
    private static ImageDataset train;
    private static ImageDataset test;
    private static ImageDataset small;

    @TempDir
    Path dir;

    @BeforeAll
    static void load() {
        LabeledData data = (LabeledData) Datasets.open(Path.of("..", "data", "fashion-mnist-mini"));
        // A random subset: the embedded files keep the original order.
        train = data.train().shuffled(1).head(2000);
        test = data.test().shuffled(2).head(500);
        small = train.head(192);
    }

    /** A mixup written here with a fixed pairing (reverse order); lambda comes from the run's seeded random. */
    private static final Augmentation MIX = (batch, ctx) -> {
        double lam = 0.5 + 0.5 * ctx.random().nextDouble();
        NDArray x = batch.inputs();
        NDArray t = batch.softTargets();
        NDArray mixedX = x.mul(lam).add(x.flip(0).mul(1 - lam));
        NDArray mixedT = t.mul(lam).add(t.flip(0).mul(1 - lam));
        return new MixedBatch(mixedX, mixedT);
    };

    private static TrainingConfig.Builder cnn() {
        return TrainingConfig.builder("cnn").modelParameters(Map.of("width", "8", "hidden", "32")).batchSize(32)
                .learningRate(0.05).momentum(0.9).warmupSteps(5).seed(11).threads(1);
    }

    private static Map<String, float[]> params(TrainingResult result) {
        Map<String, float[]> out = new LinkedHashMap<>();
        result.model().parameters().forEach((name, p) -> out.put(name, p.getArray().toFloatArray()));
        return out;
    }

    private static void assertSameParams(Map<String, float[]> a, Map<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        a.forEach((name, values) -> assertArrayEquals(values, b.get(name), name));
    }

    @Test
    void oneEpochOfCnnBeatsChanceByFar() {
        List<TrainingListener.StepProgress> steps = new ArrayList<>();
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingResult result = new TrainingRun(cnn().epochs(1).build(), train, test,
                    new TrainingListener() {
                        @Override
                        public void onStep(StepProgress progress) {
                            steps.add(progress);
                        }
                    }).run(manager);
            double accuracy = result.finalAccuracy();
            assertTrue(accuracy > 0.6, "test accuracy after 1 epoch: " + accuracy);
            assertEquals(63, steps.size());
            assertEquals(62, steps.get(62).step());
            assertEquals(63, steps.get(0).totalSteps());
            assertTrue(steps.get(62).loss() < steps.get(0).loss());
            assertTrue(steps.get(10).samplesPerSecond() > 0 && steps.get(10).etaSeconds() >= 0);
            assertEquals(result.normalization().mean()[0], train.computeNormalization().mean()[0], 1e-6);
            assertEquals(train.sha256(), result.metadata().get("kiln.data.sha256"));
            // The saved model reads back under its stable names.
            Path file = dir.resolve("model.safetensors");
            TrainingRun.saveModel(result.model(), result.metadata(), file);
            try (SafetensorsReader reader = SafetensorsReader.open(file)) {
                assertEquals("cnn", reader.metadata().get("kiln.model"));
                assertArrayEquals(result.model().parameters().get("fc.weight").getArray().toFloatArray(),
                        reader.readFloats("fc.weight"));
            }
        }
    }

    @Test
    void sameSeedGivesIdenticalParameters() {
        TrainingConfig config = cnn().epochs(1).augmentations(List.of(MIX)).build();
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, float[]> a = params(new TrainingRun(config, small, null, null).run(manager));
            Map<String, float[]> b = params(new TrainingRun(config, small, null, null).run(manager));
            assertSameParams(a, b);
            Map<String, float[]> c = params(new TrainingRun(config.toBuilder().seed(12).build(), small, null, null)
                    .run(manager));
            assertFalse(java.util.Arrays.equals(a.get("conv1.weight"), c.get("conv1.weight")));
        }
    }

    private void resumeGivesTheStraightResult(TrainingConfig.Builder builder) {
        TrainingConfig straight = builder.epochs(2).augmentations(List.of(MIX, MIX)).build();
        Path checkpoints = dir.resolve(straight.optimizer());
        TrainingConfig interrupted = straight.toBuilder().checkpointDir(checkpoints).resume(true).build();
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, float[]> expected = params(new TrainingRun(straight, small, null, null).run(manager));
            RuntimeException crash = assertThrows(RuntimeException.class,
                    () -> new TrainingRun(interrupted, small, null, new TrainingListener() {
                        @Override
                        public void onEpoch(EpochResult result) {
                            throw new IllegalStateException("simulated crash after epoch " + result.epoch());
                        }
                    }).run(manager));
            assertTrue(crash.getMessage().contains("after epoch 0"));
            assertTrue(Files.exists(checkpoints.resolve(TrainingRun.CHECKPOINT)));
            TrainingResult resumed = new TrainingRun(interrupted, small, null, null).run(manager);
            assertEquals(1, resumed.startEpoch());
            assertEquals(1, resumed.history().size());
            assertSameParams(expected, params(resumed));

            // A checkpoint from another run is refused, not silently mixed in.
            KilnException e = assertThrows(KilnException.class, () -> new TrainingRun(interrupted.toBuilder()
                    .seed(99).build(), small, null, null).run(manager));
            assertTrue(e.getMessage().contains("kiln.seed") && e.getMessage().contains("resume"), e.getMessage());
        }
    }

    @Test
    void resumeWithSgdMomentumMatchesAnUninterruptedRun() {
        resumeGivesTheStraightResult(cnn().nesterov(true));
    }

    @Test
    void resumeWithAdamWMatchesAnUninterruptedRun() {
        resumeGivesTheStraightResult(TrainingConfig.builder("mlp").modelParameters(Map.of("hidden", "32"))
                .optimizer("adamw").learningRate(1e-3).weightDecay(0.01).batchSize(32).seed(5).threads(1));
    }

    @Test
    void nonFiniteLossStopsWithEpochAndStep() {
        try (NDManager manager = NDManager.newBaseManager()) {
            KilnException e = assertThrows(KilnException.class, () -> new TrainingRun(cnn().epochs(1)
                    .learningRate(1e30).warmupSteps(0).build(), small, null, null).run(manager));
            assertTrue(e.getMessage().contains("epoch 1, step ") && e.getMessage().contains("diverged"),
                    e.getMessage());

            // Poisoned inputs in the second epoch: the checkpoint of the first survives untouched.
            Path checkpoints = dir.resolve("nan");
            Augmentation poison = (batch, ctx) -> new MixedBatch(ctx.epoch() == 1
                    ? batch.inputs().mul(Float.NaN) : batch.inputs(), batch.softTargets());
            TrainingConfig config = cnn().epochs(2).augmentations(List.of(poison)).checkpointDir(checkpoints)
                    .build();
            e = assertThrows(KilnException.class, () -> new TrainingRun(config, small, null, null).run(manager));
            assertTrue(e.getMessage().contains("epoch 2, step 1 of 6") && e.getMessage().contains("after epoch 1"),
                    e.getMessage());
            try (SafetensorsReader reader = SafetensorsReader.open(checkpoints.resolve(TrainingRun.CHECKPOINT))) {
                assertEquals("1", reader.metadata().get("kiln.epochs.done"));
                for (float v : reader.readFloats("conv1.weight")) {
                    assertTrue(Float.isFinite(v));
                }
            }
        }
    }
}
