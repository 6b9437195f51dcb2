package dev.kiln.core.bench;

import dev.kiln.core.bench.BenchmarkResult.VariantResult;
import java.util.List;
import java.util.Map;

/** Hand-made results for gate and report tests, so they need no engine. */
final class Fixtures {
    private Fixtures() {
    }

    static VariantResult variant(String name, boolean baseline, double accuracy, double speedup, double p95) {
        return new VariantResult(name, baseline, "/m/" + name + ".safetensors", baseline ? null : "unified",
                baseline ? Map.of() : Map.of("speedup", "2"), accuracy, baseline ? 0 : 6, baseline ? 0 : 3.0,
                0.5 / speedup, 1000 * speedup, speedup, p95 / 2, p95, 1.25, 2.5, 64L << 20, 512L << 20, true,
                List.of(0.5 / speedup, 0.5 / speedup));
    }

    /** baseline 0.90 accuracy, p95 10 ms; half 0.85, 1.6x, p95 6 ms. */
    static BenchmarkResult result() {
        return new BenchmarkResult("/m/model.safetensors", "resnet", Map.of("width", 4L, "blocks", 2L),
                "/data/fashion", 500, new BenchmarkHarness.Settings(64, 2, 3, 8, 0, 42), "cpu()", "PyTorch 2.7.1",
                2, true, List.of(variant("full", true, 0.90, 1.0, 10.0), variant("half", false, 0.85, 1.6, 6.0)));
    }
}
