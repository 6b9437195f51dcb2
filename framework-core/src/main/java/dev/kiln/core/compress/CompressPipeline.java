package dev.kiln.core.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.core.JsonProcessingException;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.model.CheckpointModels;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.TensorInfo;
import dev.kiln.core.worker.Json;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Compresses a checkpoint tensor by tensor: every weight matrix or conv kernel the compressor
 * {@linkplain Compressor#appliesTo applies to} is replaced by its stored form, everything else (biases, norm weights,
 * running statistics, integer tensors) is copied unchanged.
 *
 * <p>The output is a safetensors file whose compressed tensors are stored as {@code <original name><suffix>} (for
 * example {@code conv2.weight.q} and {@code conv2.weight.scale} for int8). Its {@code __metadata__} keeps the input's
 * metadata (so the model can be rebuilt), sets {@code kiln.format = compressed-v1}, and records under
 * {@link #METADATA_KEY} a JSON document with the compressor id and parameters, the original tensor order, and for
 * each compressed tensor its shape, dtype, stored names and the compressor's own format metadata. That document is
 * all {@link CompressedCheckpoints#load} needs.
 *
 * <p>The whole compressed model is held in memory before it is written (atomically), which suits the zoo's models;
 * multi-gigabyte checkpoints would want the streaming writer instead.
 */
public final class CompressPipeline {
    /** The {@code __metadata__} key holding the compression record (JSON). */
    public static final String METADATA_KEY = "kiln.compressed";
    /** The {@code kiln.format} of a compressed checkpoint. */
    public static final String FORMAT = "compressed-v1";

    private final String compressorId;
    private final Map<String, Object> parameters;
    private final Compressor compressor;
    /** When set, only these tensor names may be compressed; the others are copied as they are. */
    private java.util.Set<String> onlyNames;

    /**
     * @param compressorId the id the compressor was created from (recorded in the output)
     * @param parameters its bound parameter values (recorded in the output and the report)
     * @param compressor the operation, already created and validated through the registry
     */
    public CompressPipeline(String compressorId, Map<String, Object> parameters, Compressor compressor) {
        this.compressorId = compressorId;
        this.parameters = new LinkedHashMap<>(parameters);
        this.compressor = compressor;
    }

    /**
     * The tensors a compressor may touch in {@code checkpoint} when the caller names none: for {@code structured} on a
     * Kiln classifier, the weights of the layers that load narrower ({@link CheckpointModels#shrinkableWeights}),
     * since rows removed elsewhere would only be zeroed (residual paths) or, in the head, delete whole classes; null
     * (every eligible tensor) otherwise.
     */
    public static List<String> defaultScope(String compressorId, Path checkpoint) {
        return "structured".equals(compressorId) ? CheckpointModels.shrinkableWeights(checkpoint) : null;
    }

    /**
     * Compresses at most the tensors named in {@code names} (e.g. the layers a model can load narrower for
     * {@code structured}); every other tensor is copied unchanged. Returns this pipeline.
     */
    public CompressPipeline restrictTo(java.util.Collection<String> names) {
        this.onlyNames = java.util.Set.copyOf(names);
        return this;
    }

    /** Per-tensor outcome; {@code density} is the fraction of non-zero entries in the reconstruction. */
    public record TensorReport(String name, List<Long> shape, String format, long bytesBefore, long bytesAfter,
            double relativeError, double density, Map<String, String> metadata) {
    }

    /** The whole run: payload bytes (tensor data only) and file sizes before and after. */
    public record Report(Path input, Path output, long bytesBefore, long bytesAfter, long fileBytesBefore,
            long fileBytesAfter, double seconds, List<TensorReport> tensors, List<String> copied) {

        /** Payload bytes before divided by payload bytes after (greater than 1 when smaller). */
        public double ratio() {
            return bytesAfter == 0 ? Double.POSITIVE_INFINITY : (double) bytesBefore / bytesAfter;
        }

        /** The relative error of one compressed tensor, or NaN when it was copied. */
        public double relativeError(String name) {
            return tensors.stream().filter(t -> t.name().equals(name)).mapToDouble(TensorReport::relativeError)
                    .findFirst().orElse(Double.NaN);
        }
    }

    /**
     * Whether a tensor is a weight that compression may touch at all: at least 2-D and not a bias or normalisation
     * parameter. Norms and biases are tiny and precision-critical, so no compressor gets to see them.
     */
    public static boolean isCompressible(String name, Shape shape) {
        if (shape.dimension() < 2) {
            return false;
        }
        String lower = name.toLowerCase(Locale.ROOT);
        String last = lower.contains(".") ? lower.substring(lower.lastIndexOf('.') + 1) : lower;
        if (last.contains("bias") || last.startsWith("running_")) {
            return false;
        }
        for (String part : lower.split("\\.")) {
            if (part.contains("norm") || part.matches("(bn|ln)[0-9_]*")) {
                return false;
            }
        }
        return true;
    }

    /**
     * Compresses {@code input} into {@code output} (written atomically), computing the report in {@code manager}.
     * The report is returned, not written; see {@link #writeReport}.
     */
    public Report run(Path input, Path output, NDManager manager, Map<String, String> extraMetadata) {
        long start = System.nanoTime();
        Path in = input.toAbsolutePath().normalize();
        Path out = output.toAbsolutePath().normalize();
        if (in.equals(out)) {
            throw new KilnException("compress: output " + output + " is the input checkpoint; choose another path");
        }
        List<TensorReport> tensors = new ArrayList<>();
        List<String> copied = new ArrayList<>();
        long bytesBefore = 0;
        long bytesAfter = 0;
        try (SafetensorsReader reader = SafetensorsReader.open(in); NDManager scope = manager.newSubManager()) {
            Map<String, String> inputMeta = reader.metadata();
            if (FORMAT.equals(inputMeta.get("kiln.format"))) {
                throw new KilnException("compress: " + input + " is already a compressed checkpoint (kiln.format = "
                        + FORMAT + "); compress the original model instead");
            }
            Set<String> originalNames = new LinkedHashSet<>(reader.names());
            List<String> allowed = onlyNames != null ? List.copyOf(onlyNames) : defaultScope(compressorId, input);
            Set<String> only = allowed == null ? null : Set.copyOf(allowed);
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            Map<String, Object> record = new LinkedHashMap<>();
            record.put("compressor", compressorId);
            record.put("params", parameters);
            record.put("names", new ArrayList<>(originalNames));
            Map<String, Object> compressedRecords = new LinkedHashMap<>();
            for (String name : originalNames) {
                TensorInfo info = reader.info(name);
                bytesBefore += info.byteLength();
                NDArray original = reader.read(name, scope);
                Shape shape = original.getShape();
                boolean eligible = original.getDataType().isFloating() && isCompressible(name, shape)
                        && (only == null || only.contains(name)) && compressor.appliesTo(name, shape);
                if (!eligible) {
                    put(arrays, name, original, name, originalNames);
                    bytesAfter += info.byteLength();
                    copied.add(name);
                    continue;
                }
                CompressedTensor compressed = compressor.compress(name, original);
                if (compressed == null || compressed.stored() == null || compressed.stored().isEmpty()
                        || compressed.reconstruction() == null) {
                    throw new KilnException("compressor '" + compressorId + "' returned nothing for tensor '" + name
                            + "'");
                }
                if (!compressed.reconstruction().getShape().equals(shape)) {
                    throw new KilnException("compressor '" + compressorId + "' reconstructed tensor '" + name
                            + "' with shape " + compressed.reconstruction().getShape() + " instead of " + shape);
                }
                Map<String, String> stored = new LinkedHashMap<>();
                long after = 0;
                for (Map.Entry<String, NDArray> e : compressed.stored().entrySet()) {
                    String storedName = name + e.getKey();
                    put(arrays, storedName, e.getValue(), name, originalNames);
                    stored.put(e.getKey(), storedName);
                    after += e.getValue().size() * e.getValue().getDataType().getNumOfBytes();
                }
                bytesAfter += after;
                double[] stats = errorAndDensity(original, compressed.reconstruction());
                Map<String, String> meta = compressed.metadata() == null ? Map.of() : compressed.metadata();
                Map<String, Object> entry = new LinkedHashMap<>();
                entry.put("shape", shapeList(shape));
                entry.put("dtype", info.dtype().code());
                entry.put("stored", stored);
                entry.put("metadata", meta);
                compressedRecords.put(name, entry);
                tensors.add(new TensorReport(name, shapeList(shape), meta.getOrDefault("format", compressorId),
                        info.byteLength(), after, stats[0], stats[1], meta));
            }
            record.put("tensors", compressedRecords);
            Map<String, String> metadata = new LinkedHashMap<>(inputMeta);
            if (inputMeta.containsKey("kiln.format")) {
                metadata.put("kiln.source.format", inputMeta.get("kiln.format"));
            }
            metadata.put("kiln.format", FORMAT);
            metadata.putAll(extraMetadata);
            metadata.put(METADATA_KEY, Json.MAPPER.writeValueAsString(record));
            createParent(out);
            SafetensorsWriter.save(out, metadata, arrays);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot encode the compression record", e);
        }
        long fileBefore = size(in);
        long fileAfter = size(out);
        return new Report(in, out, bytesBefore, bytesAfter, fileBefore, fileAfter,
                (System.nanoTime() - start) / 1e9, tensors, copied);
    }

    /** The report as a JSON-ready map, plus any extra entries (accuracy, fingerprint). */
    public Map<String, Object> toJson(Report report, Map<String, Object> extra) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("compressor", compressorId);
        doc.put("params", parameters);
        doc.put("input", report.input().toString());
        doc.put("output", report.output().toString());
        doc.put("bytesBefore", report.bytesBefore());
        doc.put("bytesAfter", report.bytesAfter());
        doc.put("ratio", finite(report.ratio()));
        doc.put("fileBytesBefore", report.fileBytesBefore());
        doc.put("fileBytesAfter", report.fileBytesAfter());
        doc.put("seconds", report.seconds());
        doc.putAll(extra);
        List<Map<String, Object>> rows = new ArrayList<>();
        for (TensorReport t : report.tensors()) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("name", t.name());
            row.put("shape", t.shape());
            row.put("format", t.format());
            row.put("bytesBefore", t.bytesBefore());
            row.put("bytesAfter", t.bytesAfter());
            row.put("relativeError", finite(t.relativeError()));
            row.put("density", t.density());
            row.put("metadata", t.metadata());
            rows.add(row);
        }
        doc.put("tensors", rows);
        doc.put("copied", report.copied());
        return doc;
    }

    /** Writes the report JSON atomically. */
    public void writeReport(Path file, Report report, Map<String, Object> extra) {
        try {
            createParent(file.toAbsolutePath());
            AtomicFiles.writeString(file, Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(
                    toJson(report, extra)));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot encode the compression report", e);
        }
    }

    /**
     * {@code ||W - W_hat||_F / ||W||_F} in float64 on the tensors' device, and the non-zero fraction of W_hat. A zero
     * W gives error 0 when W_hat is zero too and infinity otherwise.
     */
    static double[] errorAndDensity(NDArray original, NDArray reconstruction) {
        try (NDManager scope = original.getManager().newSubManager()) {
            NDArray w = original.toType(DataType.FLOAT64, true);
            w.attach(scope);
            NDArray r = reconstruction.toDevice(w.getDevice(), true).toType(DataType.FLOAT64, false);
            r.attach(scope);
            double diff = w.sub(r).square().sum().sqrt().getDouble();
            double norm = w.square().sum().sqrt().getDouble();
            double error = norm == 0 ? (diff == 0 ? 0 : Double.POSITIVE_INFINITY) : diff / norm;
            double density = (double) r.countNonzero().getLong() / r.size();
            return new double[] {error, density};
        }
    }

    private static void put(Map<String, NDArray> arrays, String storedName, NDArray array, String owner,
            Set<String> originalNames) {
        boolean clashesWithOriginal = !storedName.equals(owner) && originalNames.contains(storedName);
        if (clashesWithOriginal || arrays.containsKey(storedName)) {
            throw new KilnException("compress: the stored name '" + storedName + "' for tensor '" + owner
                    + "' collides with another tensor of the checkpoint; rename that tensor");
        }
        arrays.put(storedName, array);
    }

    private static List<Long> shapeList(Shape shape) {
        List<Long> dims = new ArrayList<>();
        for (long d : shape.getShape()) {
            dims.add(d);
        }
        return dims;
    }

    private static Object finite(double value) {
        return Double.isFinite(value) ? value : null;
    }

    private static void createParent(Path file) {
        try {
            if (file.getParent() != null) {
                Files.createDirectories(file.getParent());
            }
        } catch (IOException e) {
            throw new KilnException("cannot create folder " + file.getParent() + ": " + e.getMessage(), e);
        }
    }

    private static long size(Path file) {
        try {
            return Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
