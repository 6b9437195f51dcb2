package dev.kiln.core.compress;

import dev.kiln.core.model.CheckpointModels;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.training.ParameterStore;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.WorkerRequest;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CompressPipelineTest {
    private static final Path DATA = Path.of("..", "data", "fashion-mnist-mini");
    private static ImageDataset test;
    private static Path model;
    private static double trainedAccuracy;

    @TempDir
    static Path shared;

    @TempDir
    Path dir;

    @BeforeAll
    static void trainTinyCnn() {
        LabeledData data = (LabeledData) Datasets.open(DATA);
        ImageDataset train = data.train().shuffled(3).head(640);
        test = data.test().shuffled(4).head(300);
        TrainingConfig config = TrainingConfig.builder("cnn").modelParameters(Map.of("width", "8", "hidden", "32"))
                .epochs(1).batchSize(32).learningRate(0.05).warmupSteps(3).seed(5).threads(1).build();
        model = shared.resolve("model.safetensors");
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingResult result = new TrainingRun(config, train, test, null).run(manager);
            TrainingRun.saveModel(result.model(), result.metadata(), model);
            trainedAccuracy = result.finalAccuracy();
        }
    }

    private static CompressPipeline pipeline(String id, Map<String, String> params) {
        Registry registry = CompressTestTechniques.registry();
        Compressor compressor = registry.create(Kind.COMPRESS, Compressor.class, id, params);
        return new CompressPipeline(id, new LinkedHashMap<>(params), compressor);
    }

    /** The original tensors as float64 rows [out][rest], read without DJL. */
    private static Map<String, double[][]> originals() {
        Map<String, double[][]> out = new LinkedHashMap<>();
        try (SafetensorsReader reader = SafetensorsReader.open(model)) {
            for (String name : reader.names()) {
                long[] shape = reader.info(name).shape();
                float[] values = reader.readFloats(name);
                int rows = (int) shape[0];
                int cols = values.length / rows;
                double[][] m = new double[rows][cols];
                for (int i = 0; i < values.length; i++) {
                    m[i / cols][i % cols] = values[i];
                }
                out.put(name, m);
            }
        }
        return out;
    }

    private static double relativeError(double[][] w, double[][] r) {
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < w.length; i++) {
            for (int j = 0; j < w[i].length; j++) {
                diff += (w[i][j] - r[i][j]) * (w[i][j] - r[i][j]);
                norm += w[i][j] * w[i][j];
            }
        }
        return Math.sqrt(diff) / Math.sqrt(norm);
    }

    private static double[][] int8Reference(double[][] w) {
        double[][] r = new double[w.length][];
        for (int i = 0; i < w.length; i++) {
            double max = 0;
            for (double v : w[i]) {
                max = Math.max(max, Math.abs(v));
            }
            double scale = max / 127;
            r[i] = new double[w[i].length];
            for (int j = 0; j < w[i].length; j++) {
                r[i][j] = scale == 0 ? 0 : Math.max(-127, Math.min(127, Math.round(w[i][j] / scale))) * scale;
            }
        }
        return r;
    }

    private static boolean compressible(String name, int dims) {
        return dims >= 2 && !name.endsWith(".bias") && !name.startsWith("bn");
    }

    @Test
    void int8ShrinksEveryWeightFourfoldWithTheReferenceErrorAndKeepsAccuracy() throws Exception {
        Path out = dir.resolve("int8.safetensors");
        CompressPipeline.Report report = pipeline("int8", Map.of()).run(model, out, NDManager.newBaseManager(),
                Map.of());
        Map<String, double[][]> originals = originals();
        List<String> expected = new ArrayList<>();
        try (SafetensorsReader reader = SafetensorsReader.open(model)) {
            for (String name : reader.names()) {
                if (compressible(name, reader.info(name).shape().length)) {
                    expected.add(name);
                }
            }
        }
        assertTrue(expected.containsAll(List.of("conv1.weight", "conv2.weight", "fc1.weight", "fc.weight")),
                expected.toString());
        assertEquals(expected, report.tensors().stream().map(CompressPipeline.TensorReport::name).toList());
        assertTrue(report.copied().contains("fc1.bias") && report.copied().stream().anyMatch(
                n -> n.contains("running_mean")), report.copied().toString());
        long before = 0;
        long after = 0;
        for (Map.Entry<String, double[][]> e : originals.entrySet()) {
            double[][] w = e.getValue();
            long numel = (long) w.length * w[0].length;
            before += 4 * numel;
            if (expected.contains(e.getKey())) {
                after += numel + 4L * w.length;
                double want = relativeError(w, int8Reference(w));
                double got = report.relativeError(e.getKey());
                assertEquals(want, got, 1e-3 * want + 1e-7, e.getKey());
                assertTrue(got > 0 && got < 0.02, e.getKey() + " error " + got);
            } else {
                after += 4 * numel;
            }
        }
        assertEquals(before, report.bytesBefore());
        assertEquals(after, report.bytesAfter());
        assertTrue(report.fileBytesAfter() < report.fileBytesBefore() * 0.4, report.toString());
        assertEquals(Files.size(out), report.fileBytesAfter());

        try (SafetensorsReader a = SafetensorsReader.open(model); SafetensorsReader b = SafetensorsReader.open(out)) {
            for (String copied : report.copied()) {
                assertTrue(Arrays.equals(a.readBytes(copied), b.readBytes(copied)), copied);
            }
            assertEquals("I8", b.info("conv2.weight.q").dtype().code());
            assertFalse(b.contains("conv2.weight"));
            JsonNode record = Json.MAPPER.readTree(b.metadata().get(CompressPipeline.METADATA_KEY));
            assertEquals("int8", record.get("compressor").asText());
            assertEquals("int8-symmetric-per-channel",
                    record.at("/tensors/fc.weight/metadata/format").asText());
            assertEquals("cnn", b.metadata().get("kiln.model"));
            assertEquals(CompressPipeline.FORMAT, b.metadata().get("kiln.format"));
        }

        try (NDManager manager = NDManager.newBaseManager()) {
            double accBefore = CheckpointModels.load(model, manager).accuracy(test, manager, 100);
            double accAfter = CheckpointModels.load(out, manager).accuracy(test, manager, 100);
            // The model rebuilt from the checkpoint's metadata scores exactly what training measured.
            assertEquals(trainedAccuracy, accBefore, 1e-12);
            assertTrue(accBefore > 0.3, "trained accuracy " + accBefore);
            assertEquals(accBefore, accAfter, 0.01);
        }
    }

    @Test
    void loadedCompressedCheckpointGivesTheLogitsOfTheReconstruction() {
        Path out = dir.resolve("int8.safetensors");
        pipeline("int8", Map.of()).run(model, out, NDManager.newBaseManager(), Map.of());
        try (NDManager manager = NDManager.newBaseManager()) {
            CheckpointModels.Loaded compressed = CheckpointModels.load(out, manager);
            CheckpointModels.Loaded reference = CheckpointModels.load(model, manager);
            // Swap each weight for the compressor's own reconstruction, computed here straight from the original.
            Compressor int8 = new CompressTestTechniques.Int8();
            Map<String, NDArray> weights = CompressedCheckpoints.load(model, manager);
            Map<String, NDArray> rebuilt = new LinkedHashMap<>();
            weights.forEach((name, w) -> {
                if (compressible(name, w.getShape().dimension())) {
                    CompressedTensor c = int8.compress(name, w);
                    rebuilt.put(name, c.reconstruction());
                } else {
                    rebuilt.put(name, w);
                }
            });
            reference.model().loadParameters(rebuilt);
            ImageDataset ready = test.normalized(compressed.normalization());
            NDList batch = ready.batch(manager, new int[] {0, 1, 2, 3, 4, 5, 6, 7}, 0, 8);
            ParameterStore store = new ParameterStore(manager, false);
            float[] a = compressed.model().forward(store, batch.get(0), false).toFloatArray();
            float[] b = reference.model().forward(store, batch.get(0), false).toFloatArray();
            for (int i = 0; i < a.length; i++) {
                assertEquals(b[i], a[i], 1e-5f * Math.max(1, Math.abs(b[i])), "logit " + i);
            }
        }
    }

    @Test
    void magnitudeKeepsTheLargestEntriesAtTheExactDensity() {
        Path out = dir.resolve("pruned.safetensors");
        CompressPipeline.Report report = pipeline("magnitude", Map.of("sparsity", "0.75")).run(model, out,
                NDManager.newBaseManager(), Map.of());
        Map<String, double[][]> originals = originals();
        assertFalse(report.tensors().isEmpty());
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, NDArray> loaded = CompressedCheckpoints.load(out, manager);
            for (CompressPipeline.TensorReport t : report.tensors()) {
                double[][] w = originals.get(t.name());
                int rows = w.length;
                int cols = w[0].length;
                double[] abs = new double[rows * cols];
                for (int i = 0; i < abs.length; i++) {
                    abs[i] = Math.abs(w[i / cols][i % cols]);
                }
                double[] sorted = abs.clone();
                Arrays.sort(sorted);
                long keep = Math.round(0.25 * abs.length);
                double threshold = sorted[abs.length - (int) keep];
                double[][] r = new double[rows][cols];
                float[] got = loaded.get(t.name()).toFloatArray();
                for (int i = 0; i < abs.length; i++) {
                    r[i / cols][i % cols] = abs[i] >= threshold ? w[i / cols][i % cols] : 0;
                    assertEquals((float) r[i / cols][i % cols], got[i], 0f, t.name() + "[" + i + "]");
                }
                assertEquals((double) keep / abs.length, t.density(), 1e-12, t.name());
                assertEquals(relativeError(w, r), t.relativeError(), 1e-6, t.name());
                // Pruning stores the dense tensor: no bytes saved in the file.
                assertEquals(t.bytesBefore(), t.bytesAfter());
            }
        }
    }

    @Test
    void goalValidatesFirstReportsAccuracyAndIsUpToDateTheSecondTime() throws Exception {
        Registry registry = CompressTestTechniques.registry();
        Path out = dir.resolve("goal/int8.safetensors");
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("checkpoint", model.toString());
        config.putObject("compressor").put("id", "int8");
        config.put("output", out.toString());
        config.put("dataset", DATA.toString());
        List<Event> events = new ArrayList<>();
        CompressGoal goal = new CompressGoal(registry);
        Map<String, Object> result = goal.run(new WorkerRequest("compress", config, 1, null, true), events::add);
        Path report = CompressGoal.reportPath(out);
        assertEquals(out.toAbsolutePath().toString(), result.get("output"));
        assertEquals(report.toAbsolutePath().toString(), result.get("report"));
        double before = (Double) result.get("accuracyBefore");
        double after = (Double) result.get("accuracyAfter");
        assertEquals(before, after, 0.01);
        JsonNode doc = Json.MAPPER.readTree(report.toFile());
        assertEquals(before, doc.get("accuracyBefore").asDouble());
        assertTrue(doc.get("ratio").asDouble() > 2.5, doc.toString());
        assertTrue(doc.get("bytesAfter").asLong() < doc.get("bytesBefore").asLong());
        // speed before and after from one benchmark run: the ratio is the ratio of the two throughputs
        double sBefore = doc.get("samplesPerSecondBefore").asDouble();
        double sAfter = doc.get("samplesPerSecondAfter").asDouble();
        assertTrue(sBefore > 0 && sAfter > 0, doc.toString());
        assertEquals(sAfter / sBefore, doc.get("speedup").asDouble(), 1e-6 * sAfter / sBefore);
        assertTrue(doc.get("latencyP50MillisBefore").asDouble() > 0, doc.toString());
        assertEquals(1000, doc.get("benchmark").get("samples").asInt(), doc.toString());

        events.clear();
        Map<String, Object> again = goal.run(new WorkerRequest("compress", config, 1, null, true), events::add);
        assertEquals(true, again.get("upToDate"));
        assertTrue(events.stream().anyMatch(e -> CompressGoal.UP_TO_DATE.equals(e.message())));

        ObjectNode typo = config.deepCopy();
        ((ObjectNode) typo.get("compressor")).put("id", "int9");
        KilnException unknown = assertThrows(KilnException.class, () -> goal.run(new WorkerRequest("compress",
                typo, 1, null, true), events::add));
        assertTrue(unknown.getMessage().contains("'int9'") && unknown.getMessage().contains("int8"),
                unknown.getMessage());
        ObjectNode badParam = config.deepCopy();
        ((ObjectNode) badParam.get("compressor")).put("id", "magnitude");
        ((ObjectNode) badParam.get("compressor")).putObject("params").put("sparsity", "1.5");
        KilnException range = assertThrows(KilnException.class, () -> goal.run(new WorkerRequest("compress",
                badParam, 1, null, true), events::add));
        assertTrue(range.getMessage().contains("sparsity") && range.getMessage().contains("1.5"),
                range.getMessage());
    }

    @Test
    void structuredPrunesOnlyTheLayersThatLoadNarrower() throws Exception {
        Path out = dir.resolve("goal/structured.safetensors");
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("checkpoint", model.toString());
        config.putObject("compressor").put("id", "structured");
        config.put("output", out.toString());
        List<Event> events = new ArrayList<>();
        new CompressGoal(CompressTestTechniques.registry()).run(new WorkerRequest("compress", config, 1, null, true),
                events::add);
        try (SafetensorsReader reader = SafetensorsReader.open(out)) {
            // the cnn's shrinkable layers are conv1, conv2 and fc1; the head fc keeps every class
            for (String layer : List.of("conv1", "conv2", "fc1")) {
                assertTrue(reader.names().contains(layer + ".weight.q"), layer + ": " + reader.names());
            }
            assertTrue(reader.names().contains("fc.weight") && !reader.names().contains("fc.weight.q"),
                    reader.names().toString());
        }
        assertTrue(events.stream().anyMatch(e -> e.message().startsWith("structured: pruning conv1.weight, "
                + "conv2.weight, fc1.weight")), events.toString());
    }

    @Test
    void badInputsFailNamingTheProblem() {
        CompressPipeline int8 = pipeline("int8", Map.of());
        KilnException same = assertThrows(KilnException.class, () -> int8.run(model, model,
                NDManager.newBaseManager(), Map.of()));
        assertTrue(same.getMessage().contains("is the input"), same.getMessage());
        Path out = dir.resolve("int8.safetensors");
        int8.run(model, out, NDManager.newBaseManager(), Map.of());
        KilnException twice = assertThrows(KilnException.class, () -> int8.run(out, dir.resolve("again"),
                NDManager.newBaseManager(), Map.of()));
        assertTrue(twice.getMessage().contains("already a compressed checkpoint"), twice.getMessage());
        assertTrue(CompressedCheckpoints.isCompressed(out));
        assertFalse(CompressedCheckpoints.isCompressed(model));
        // A compressor that reshapes the weight is caught and named.
        Compressor broken = (name, w) -> new CompressedTensor(Map.of("", w.flatten()), w.flatten(), Map.of());
        KilnException shape = assertThrows(KilnException.class, () -> new CompressPipeline("broken", Map.of(), broken)
                .run(model, dir.resolve("b.safetensors"), NDManager.newBaseManager(), Map.of()));
        assertTrue(shape.getMessage().contains("conv1.weight") && shape.getMessage().contains("shape"),
                shape.getMessage());
    }

    @Test
    void onlyWeightsAreCompressible() {
        assertTrue(CompressPipeline.isCompressible("conv1.weight", new ai.djl.ndarray.types.Shape(8, 1, 3, 3)));
        assertTrue(CompressPipeline.isCompressible("fc.weight", new ai.djl.ndarray.types.Shape(32, 64)));
        assertFalse(CompressPipeline.isCompressible("fc.bias", new ai.djl.ndarray.types.Shape(32)));
        assertFalse(CompressPipeline.isCompressible("layer.norm.weight", new ai.djl.ndarray.types.Shape(4, 4)));
        assertFalse(CompressPipeline.isCompressible("bn1.weight", new ai.djl.ndarray.types.Shape(8, 1)));
        assertFalse(CompressPipeline.isCompressible("proj.bias", new ai.djl.ndarray.types.Shape(2, 8)));
    }
}
