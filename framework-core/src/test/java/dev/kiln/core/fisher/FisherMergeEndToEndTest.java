package dev.kiln.core.fisher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.merge.MergePipeline;
import dev.kiln.core.merge.MergeSpec;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two classifier checkpoints, their Fishers computed beside them, auto-discovered and streamed through the merge
 * pipeline into a Fisher-weighted average, checked against {@code sum(F_i w_i theta_i) / sum(F_i w_i)} in float64
 * from the files on disk.
 */
class FisherMergeEndToEndTest {
    static final float FLOOR = 1e-6f;

    @TempDir
    static Path dir;

    static NDManager manager;
    static Path a;
    static Path b;
    static ImageDataset data;

    /**
     * The Fisher-weighted average as the {@code fisher} plugin computes it ({@code dev.kiln.merge.FisherMerge} is
     * not on the core's class path): floored statistic times weight as each model's importance.
     */
    static final class FisherWeighted implements MergeMethod {
        @Override
        public NDArray merge(MergeInput input) {
            NDArray num = null;
            NDArray den = null;
            for (ModelTensor m : input.models()) {
                if (m.statistic() == null) {
                    throw new KilnException("no statistic for " + input.tensorName());
                }
                NDArray importance = m.statistic().maximum(FLOOR).mul((float) m.weight());
                NDArray term = importance.mul(m.tensor());
                num = num == null ? term : num.add(term);
                den = den == null ? importance : den.add(importance);
            }
            return num.div(den);
        }
    }

    static Path checkpoint(String name, long seed) {
        Path file = dir.resolve(name + ".safetensors");
        try (NDManager scope = manager.newSubManager()) {
            KilnModel model = ModelZoo.build("mlp", Map.of("hidden", "5"), new Shape(1, 2, 3), 3)
                    .initialize(scope, seed);
            Map<String, String> meta = new LinkedHashMap<>();
            meta.put("kiln.model", "mlp");
            meta.put("kiln.model.parameters", "{\"hidden\":\"5\"}");
            meta.put("kiln.data.classes", "[\"a\",\"b\",\"c\"]");
            meta.put("kiln.input.shape", "(1, 2, 3)");
            meta.put("kiln.normalization", "none");
            TrainingRun.saveModel(model, meta, file);
        }
        return file;
    }

    @BeforeAll
    static void setUp() {
        manager = NDManager.newBaseManager();
        data = FisherEstimatorTest.data(16, 8);
        a = checkpoint("ft-a", 1);
        b = checkpoint("ft-b", 2);
        FisherEstimator.Settings settings = new FisherEstimator.Settings(16, FisherEstimator.Mode.EMPIRICAL, 3);
        for (Path p : List.of(a, b)) {
            FisherEstimator.compute(p, data, settings, FisherEstimator.fisherFile(p), manager);
        }
    }

    @AfterAll
    static void tearDown() {
        manager.close();
    }

    static double[] read(Path file, String name) {
        try (SafetensorsReader r = SafetensorsReader.open(file)) {
            float[] f = r.readFloats(name);
            double[] d = new double[f.length];
            for (int i = 0; i < f.length; i++) {
                d[i] = f[i];
            }
            return d;
        }
    }

    @Test
    void autoDiscoveredFishersMergeToTheFisherWeightedAverage() {
        List<MergeSpec.ModelInput> models = FisherStatistics.resolve("fisher", List.of(
                new MergeSpec.ModelInput(a, 2.0, Map.of()), new MergeSpec.ModelInput(b, 0.5, Map.of())), null,
                FisherEstimator.Settings.defaults(), () -> { throw new AssertionError("nothing to compute"); }, null);
        assertEquals(dir.resolve("ft-a.fisher.safetensors"), models.get(0).statistic());
        assertEquals(dir.resolve("ft-b.fisher.safetensors"), models.get(1).statistic());
        Path out = dir.resolve("merged.safetensors");
        new MergePipeline(new FisherWeighted(), new MergeSpec("fisher", Map.of(), null, models, out, 2, 1L, null, 0,
                false), null).run();
        double[] weights = {2.0, 0.5};
        boolean differsFromPlainAverage = false;
        for (String name : List.of("fc1.weight", "fc1.bias", "head.weight", "head.bias")) {
            double[][] theta = {read(a, name), read(b, name)};
            double[][] fisher = {read(models.get(0).statistic(), name), read(models.get(1).statistic(), name)};
            double[] got = read(out, name);
            assertEquals(theta[0].length, got.length);
            for (int j = 0; j < got.length; j++) {
                double num = 0;
                double den = 0;
                for (int i = 0; i < 2; i++) {
                    double f = Math.max(fisher[i][j], FLOOR) * weights[i];
                    num += f * theta[i][j];
                    den += f;
                }
                double want = num / den;
                assertEquals(want, got[j], 1e-5 * Math.max(1, Math.abs(want)), name + "[" + j + "]");
                double plain = (2.0 * theta[0][j] + 0.5 * theta[1][j]) / 2.5;
                differsFromPlainAverage |= Math.abs(plain - got[j]) > 1e-3;
            }
        }
        assertTrue(differsFromPlainAverage, "the Fishers had no effect; the test could not tell them from weights");
    }

    @Test
    void missingStatisticTensorAndFileAreNamed() {
        Path partial = dir.resolve("partial.fisher.safetensors");
        try (NDManager scope = manager.newSubManager()) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            for (String name : List.of("fc1.weight", "fc1.bias", "head.weight")) {
                try (SafetensorsReader r = SafetensorsReader.open(a)) {
                    arrays.put(name, r.read(name, scope));
                }
            }
            SafetensorsWriter.save(partial, Map.of(), arrays);
        }
        List<MergeSpec.ModelInput> models = List.of(new MergeSpec.ModelInput(a, 1.0, Map.of(), partial),
                new MergeSpec.ModelInput(b, 1.0, Map.of(), FisherEstimator.fisherFile(b)));
        Path out = dir.resolve("never.safetensors");
        String m = assertThrows(KilnException.class, () -> new MergePipeline(new FisherWeighted(), new MergeSpec(
                "fisher", Map.of(), null, models, out, 1, 1L, null, 0, false), null).run()).getMessage();
        assertTrue(m.contains("'head.bias'") && m.contains("partial.fisher.safetensors") && m.contains("model 1"), m);
        assertFalse(Files.exists(out));

        Path lonely = dir.resolve("lonely.safetensors");
        try {
            Files.copy(a, lonely);
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
        m = assertThrows(KilnException.class, () -> FisherStatistics.resolve("fisher", List.of(
                MergeSpec.ModelInput.of(a), MergeSpec.ModelInput.of(lonely)), null,
                FisherEstimator.Settings.defaults(), () -> { }, null)).getMessage();
        assertTrue(m.contains("model 2") && m.contains("lonely.fisher.safetensors") && m.contains("fisherDataset"),
                m);
        // Other methods ignore Fishers unless one is configured.
        assertEquals(null, FisherStatistics.resolve("linear", List.of(MergeSpec.ModelInput.of(lonely)), null,
                FisherEstimator.Settings.defaults(), () -> { }, null).get(0).statistic());
    }
}
