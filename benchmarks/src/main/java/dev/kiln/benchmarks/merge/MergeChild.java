package dev.kiln.benchmarks.merge;

import dev.kiln.core.worker.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One merge in its own JVM, so that its peak resident set size (heap, direct buffers and libtorch's native memory
 * together) can be read from {@code /proc/self/status} without anything else in the process. Prints one line
 * {@code RESULT {json}} with the pipeline's totals and {@code peakRssBytes}. Started by {@link MergeMemory}.
 *
 * <pre>
 * java -Xmx512m -cp CLASSPATH dev.kiln.benchmarks.merge.MergeChild --method ties --params density=0.2
 *     --base base.safetensors --models a.safetensors,b.safetensors --out out.safetensors --threads 2
 * </pre>
 */
public final class MergeChild {

    private MergeChild() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = BenchSupport.parse(args);
        String method = options.get("method");
        Map<String, String> params = new LinkedHashMap<>();
        String raw = options.getOrDefault("params", "");
        for (String kv : raw.isBlank() ? new String[0] : raw.split(",")) {
            String[] parts = kv.split("=", 2);
            params.put(parts[0], parts[1]);
        }
        Path base = options.containsKey("base") ? Path.of(options.get("base")) : null;
        List<Path> models = new ArrayList<>();
        for (String m : options.get("models").split(",")) {
            models.add(Path.of(m));
        }
        Path out = Path.of(options.get("out"));
        int threads = Integer.parseInt(options.getOrDefault("threads", "2"));
        long rssBefore = BenchSupport.currentRss();
        Map<String, Object> report = BenchSupport.merge(method, params, base, models, out, threads, 1L);
        @SuppressWarnings("unchecked")
        Map<String, Object> result = new LinkedHashMap<>((Map<String, Object>) report.get("totals"));
        result.put("method", method);
        result.put("peakRssBytes", BenchSupport.peakRss());
        result.put("rssBeforeMergeBytes", rssBefore);
        result.put("maxHeapBytes", Runtime.getRuntime().maxMemory());
        long largest = 0;
        for (Object stats : ((Map<?, ?>) report.get("tensors")).values()) {
            largest = Math.max(largest, ((Number) ((Map<?, ?>) stats).get("numel")).longValue());
        }
        result.put("largestTensorElements", largest);
        Files.deleteIfExists(out);
        Files.deleteIfExists(dev.kiln.core.merge.MergePipeline.reportFile(out));
        System.out.println("RESULT " + Json.MAPPER.writeValueAsString(result));
    }
}
