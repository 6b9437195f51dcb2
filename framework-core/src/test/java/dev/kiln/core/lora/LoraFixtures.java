package dev.kiln.core.lora;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.TensorSpec;
import dev.kiln.core.worker.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Writes tiny PEFT-layout adapters and base checkpoints, and float64 matrix helpers for the references. */
final class LoraFixtures {

    private LoraFixtures() {
    }

    /** A row-major matrix in float64, exactly representable in float32 (values are float-rounded at creation). */
    record Mat(int rows, int cols, double[] v) {
        static Mat random(Random r, int rows, int cols, double scale) {
            double[] v = new double[rows * cols];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) (r.nextGaussian() * scale);
            }
            return new Mat(rows, cols, v);
        }

        double at(int i, int j) {
            return v[i * cols + j];
        }

        float[] floats() {
            float[] f = new float[v.length];
            for (int i = 0; i < v.length; i++) {
                f[i] = (float) v[i];
            }
            return f;
        }

        static Mat of(int rows, int cols, float[] f) {
            double[] v = new double[f.length];
            for (int i = 0; i < f.length; i++) {
                v[i] = f[i];
            }
            return new Mat(rows, cols, v);
        }

        /** this @ other, in float64. */
        Mat times(Mat o) {
            double[] out = new double[rows * o.cols];
            for (int i = 0; i < rows; i++) {
                for (int k = 0; k < cols; k++) {
                    double a = at(i, k);
                    for (int j = 0; j < o.cols; j++) {
                        out[i * o.cols + j] += a * o.at(k, j);
                    }
                }
            }
            return new Mat(rows, o.cols, out);
        }

        Mat scale(double s) {
            double[] out = v.clone();
            for (int i = 0; i < out.length; i++) {
                out[i] *= s;
            }
            return new Mat(rows, cols, out);
        }

        Mat plus(Mat o) {
            double[] out = v.clone();
            for (int i = 0; i < out.length; i++) {
                out[i] += o.v[i];
            }
            return new Mat(rows, cols, out);
        }

        Mat transpose() {
            double[] out = new double[v.length];
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < cols; j++) {
                    out[j * rows + i] = at(i, j);
                }
            }
            return new Mat(cols, rows, out);
        }
    }

    /** One module of a test adapter: A is r x in, B is out x r. */
    record Factors(String module, Mat a, Mat b) {
        static Factors random(Random r, String module, int rank, int in, int out) {
            return new Factors(module, Mat.random(r, rank, in, 0.5), Mat.random(r, out, rank, 0.5));
        }
    }

    /** Writes an adapter folder; {@code extra} config fields are merged into the defaults. */
    static Path writeAdapter(Path dir, int r, double alpha, boolean rslora, boolean fanInFanOut,
            Map<String, Object> extra, Factors... modules) throws Exception {
        Files.createDirectories(dir);
        ObjectNode config = Json.MAPPER.createObjectNode();
        config.put("peft_type", "LORA");
        config.put("task_type", "CAUSAL_LM");
        config.put("base_model_name_or_path", "tiny-base");
        config.put("r", r);
        config.put("lora_alpha", alpha);
        config.put("use_rslora", rslora);
        config.put("fan_in_fan_out", fanInFanOut);
        config.put("lora_dropout", 0.0);
        config.put("bias", "none");
        var targets = config.putArray("target_modules");
        for (Factors f : modules) {
            String leaf = f.module().substring(f.module().lastIndexOf('.') + 1);
            boolean seen = false;
            for (var t : targets) {
                seen |= t.asText().equals(leaf);
            }
            if (!seen) {
                targets.add(leaf);
            }
        }
        if (extra != null) {
            extra.forEach((k, v) -> config.set(k, Json.MAPPER.valueToTree(v)));
        }
        Files.writeString(dir.resolve(LoraAdapter.CONFIG_NAME), Json.MAPPER.writeValueAsString(config));
        Map<String, float[]> tensors = new LinkedHashMap<>();
        List<TensorSpec> specs = new ArrayList<>();
        for (Factors f : modules) {
            if (f.a() != null) {
                String key = LoraAdapter.KEY_PREFIX + f.module() + ".lora_A.weight";
                specs.add(new TensorSpec(key, DType.F32, new long[] {f.a().rows(), f.a().cols()}));
                tensors.put(key, f.a().floats());
            }
            if (f.b() != null) {
                String key = LoraAdapter.KEY_PREFIX + f.module() + ".lora_B.weight";
                specs.add(new TensorSpec(key, DType.F32, new long[] {f.b().rows(), f.b().cols()}));
                tensors.put(key, f.b().floats());
            }
        }
        writeFloats(dir.resolve(LoraAdapter.WEIGHTS_NAME), DType.F32, tensors, specs);
        return dir;
    }

    static void writeFloats(Path file, DType dtype, Map<String, float[]> tensors, List<TensorSpec> specs) {
        try (SafetensorsWriter w = SafetensorsWriter.create(file, Map.of(), specs)) {
            tensors.forEach(w::writeFloats);
            w.commit();
        }
    }

    /** Writes a base checkpoint of float matrices (all in {@code dtype}). */
    static void writeBase(Path file, DType dtype, Map<String, Mat> weights) {
        Map<String, float[]> tensors = new LinkedHashMap<>();
        List<TensorSpec> specs = new ArrayList<>();
        weights.forEach((name, m) -> {
            specs.add(new TensorSpec(name, dtype, new long[] {m.rows(), m.cols()}));
            tensors.put(name, m.floats());
        });
        writeFloats(file, dtype, tensors, specs);
    }
}
