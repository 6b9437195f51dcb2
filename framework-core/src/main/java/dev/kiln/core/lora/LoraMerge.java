package dev.kiln.core.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.merge.MergePipeline;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.ShardedCheckpoint;
import dev.kiln.core.safetensors.TensorInfo;
import dev.kiln.core.safetensors.TensorSpec;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.KilnVersion;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Applies and combines PEFT LoRA adapters ({@link LoraAdapter}).
 *
 * <ul>
 *   <li>{@link #mergeIntoBase} writes a full checkpoint {@code W + sum_i w_i * delta_i}.</li>
 *   <li>{@link #cat} concatenates adapters into one adapter of rank {@code sum r_i} whose product is exactly
 *       {@code sum_i w_i * delta_i} (PEFT's {@code add_weighted_adapter(..., combination_type="cat")}, LoRA Soups'
 *       CAT with fixed weights). It stays low-rank: no base needed, nothing densified.</li>
 *   <li>{@link #mergeWithMethod} runs any {@link MergeMethod} (TIES, DARE, task arithmetic, ...) on the dense
 *       updates {@code delta_i} as task vectors over a zero base, and adds the merged update to the base. This
 *       <b>densifies</b>: each targeted module's update is materialised as a full out x in matrix per adapter, so
 *       memory per module is (adapters + 2) full matrices, and the result is a full checkpoint, not an adapter (TIES
 *       or DARE on the factors themselves, as PEFT's non-SVD variants do, would create cross terms B_i A_j that
 *       neither adapter learned).</li>
 * </ul>
 *
 * <p>The checkpoint writers stream the base one tensor at a time: tensors no adapter targets are copied byte for
 * byte, targeted ones are updated in float32 (float64 for an F64 base) and written back in the base's dtype. Every
 * check that needs no values (each module's {@code <module>.weight} present in the base, float, of the update's shape;
 * adapters agreeing on layer shapes) runs before the output is started, and the output is written to a temporary file
 * renamed into place only at the end, so a failure leaves nothing at the output path.
 */
public final class LoraMerge {

    private LoraMerge() {
    }

    /** Merges one adapter scaled by {@code weight} into {@code base}; see {@link #mergeIntoBase(Path, List, List, Path)}. */
    public static Map<String, Object> mergeIntoBase(Path base, LoraAdapter adapter, double weight, Path output) {
        return mergeIntoBase(base, List.of(adapter), List.of(weight), output);
    }

    /**
     * Writes {@code output}, a single safetensors file holding every tensor of {@code base} (a file, folder or sharded
     * index), with {@code W + sum_i weights[i] * delta_i} for each targeted {@code <module>.weight}.
     *
     * @return a small report: output, tensors, updated tensors
     */
    public static Map<String, Object> mergeIntoBase(Path base, List<LoraAdapter> adapters, List<Double> weights,
            Path output) {
        checkWeights(adapters, weights);
        return rewrite(base, adapters, output, "sum", (name, deltas, manager) -> {
            NDArray sum = null;
            for (int i = 0; i < deltas.size(); i++) {
                if (deltas.get(i) == null) {
                    continue;
                }
                NDArray term = deltas.get(i).mul(weights.get(i).floatValue());
                sum = sum == null ? term : sum.add(term);
            }
            return sum;
        }, weights);
    }

    /**
     * Merges the adapters' dense updates with {@code method} and adds the result to {@code base}. For each targeted
     * tensor the method sees a zero base and one {@link ModelTensor} per adapter: its update {@code delta_i} (zeros
     * when the adapter does not adapt that module), {@code weights[i]} and {@code overrides[i]}; the random source
     * depends only on {@code seed} and the tensor name. Densifies (see the class comment).
     *
     * @param overrides per-adapter method parameters, or null
     */
    public static Map<String, Object> mergeWithMethod(Path base, List<LoraAdapter> adapters, List<Double> weights,
            List<Map<String, Double>> overrides, MergeMethod method, String methodId, long seed, Path output) {
        checkWeights(adapters, weights);
        if (overrides != null && overrides.size() != adapters.size()) {
            throw new KilnException("LoRA merge: " + overrides.size() + " override maps for " + adapters.size()
                    + " adapters");
        }
        return rewrite(base, adapters, output, methodId, (name, deltas, manager) -> {
            NDArray zeros = null;
            List<ModelTensor> models = new ArrayList<>();
            for (int i = 0; i < deltas.size(); i++) {
                NDArray d = deltas.get(i);
                if (d == null) {
                    if (zeros == null) {
                        zeros = manager.zeros(firstShape(deltas), DataType.FLOAT32);
                    }
                    d = zeros;
                }
                models.add(new ModelTensor(d, weights.get(i), overrides == null ? Map.of() : overrides.get(i), null));
            }
            NDArray zeroBase = manager.zeros(models.get(0).tensor().getShape(), DataType.FLOAT32);
            NDArray merged = method.merge(new MergeInput(name, zeroBase, List.copyOf(models), random(seed, name)));
            if (merged == null || !merged.getShape().equals(zeroBase.getShape())) {
                throw new KilnException("merge method '" + methodId + "' returned "
                        + (merged == null ? "nothing" : "shape " + merged.getShape()) + " for the LoRA update of '"
                        + name + "' of shape " + zeroBase.getShape());
            }
            return merged;
        }, weights);
    }

    private static Shape firstShape(List<NDArray> deltas) {
        for (NDArray d : deltas) {
            if (d != null) {
                return d.getShape();
            }
        }
        throw new IllegalStateException("no update");
    }

    /** Per tensor: the per-adapter updates (null where an adapter does not target it) to one combined update. */
    private interface Combiner {
        NDArray combine(String tensor, List<NDArray> deltas, NDManager manager);
    }

    private static Map<String, Object> rewrite(Path basePath, List<LoraAdapter> adapters, Path output,
            String combination, Combiner combiner, List<Double> weights) {
        if (!Files.exists(basePath)) {
            throw new KilnException("LoRA merge: the base checkpoint " + basePath + " does not exist");
        }
        try (ShardedCheckpoint base = ShardedCheckpoint.open(basePath)) {
            // tensor name -> per adapter its module (or null)
            Map<String, LoraAdapter.Module[]> targets = new LinkedHashMap<>();
            for (int i = 0; i < adapters.size(); i++) {
                LoraAdapter adapter = adapters.get(i);
                for (LoraAdapter.Module m : adapter.modules().values()) {
                    String tensor = m.baseTensor();
                    if (!base.contains(tensor)) {
                        throw new KilnException("LoRA adapter " + adapter.dir() + " adapts module '" + m.name()
                                + "' but the base checkpoint " + basePath + " has no tensor '" + tensor
                                + "' (is the adapter for another model?)");
                    }
                    TensorInfo info = base.info(tensor);
                    if (!info.dtype().isFloating()) {
                        throw new KilnException("LoRA adapter " + adapter.dir() + " adapts module '" + m.name()
                                + "' but the base tensor '" + tensor + "' has dtype " + info.dtype());
                    }
                    if (!Arrays.equals(info.shape(), m.deltaShape())) {
                        throw new KilnException("LoRA adapter " + adapter.dir() + ": module '" + m.name()
                                + "' gives an update of shape " + Arrays.toString(m.deltaShape())
                                + (m.fanInFanOut() ? " (fan_in_fan_out)" : "") + " but the base tensor '" + tensor
                                + "' in " + basePath + " has shape " + Arrays.toString(info.shape()));
                    }
                    targets.computeIfAbsent(tensor, t -> new LoraAdapter.Module[adapters.size()])[i] = m;
                }
            }
            List<TensorSpec> specs = new ArrayList<>();
            for (String name : base.names()) {
                specs.add(base.info(name).spec());
            }
            try {
                Path parent = output.toAbsolutePath().getParent();
                Files.createDirectories(parent);
            } catch (IOException e) {
                throw new KilnException("LoRA merge: cannot create the folder of " + output + ": " + e, e);
            }
            Map<String, String> metadata = new LinkedHashMap<>(base.metadata());
            metadata.putIfAbsent("format", "pt");
            metadata.put("kiln.version", KilnVersion.get());
            metadata.put("kiln.lora.combination", combination);
            metadata.put("kiln.lora.adapters", describe(adapters, weights));
            try (SafetensorsWriter writer = SafetensorsWriter.create(output, metadata, specs)) {
                for (String name : base.names()) {
                    LoraAdapter.Module[] modules = targets.get(name);
                    if (modules == null) {
                        List<ByteBuffer> chunks = base.reader(name).mapChunks(name);
                        writer.write(name, chunks.toArray(new ByteBuffer[0]));
                        continue;
                    }
                    try (NDManager manager = NDManager.newBaseManager()) {
                        NDArray w = base.read(name, manager);
                        DataType compute = w.getDataType() == DataType.FLOAT64 ? DataType.FLOAT64 : DataType.FLOAT32;
                        if (w.getDataType() != compute) {
                            w = w.toType(compute, false);
                        }
                        List<NDArray> deltas = new ArrayList<>();
                        for (int i = 0; i < modules.length; i++) {
                            deltas.add(modules[i] == null ? null : adapters.get(i).delta(modules[i], manager));
                        }
                        NDArray update = combiner.combine(name, deltas, manager);
                        NDArray merged = w.add(update.toType(compute, false));
                        long bad = merged.isNaN().logicalOr(merged.isInfinite()).countNonzero().getLong();
                        if (bad > 0) {
                            throw new KilnException("LoRA merge: tensor '" + name + "' has " + bad
                                    + " NaN or infinite value(s) after adding the adapters' update");
                        }
                        writer.write(name, merged);
                    }
                }
                writer.commit();
            }
            Map<String, Object> report = new LinkedHashMap<>();
            report.put("output", output.toString());
            report.put("combination", combination);
            report.put("tensors", base.names().size());
            report.put("updated", targets.size());
            return report;
        }
    }

    /**
     * Writes one adapter to the folder {@code outputDir} whose update is exactly {@code sum_i weights[i] * delta_i}:
     * per module, {@code A = concat_rows(weights[i] * s_i * A_i)} and {@code B = concat_cols(B_i)} over the adapters
     * that adapt it, as PEFT's {@code cat} folds each adapter's weight and scaling into its A rows. A module's rank is
     * the sum of those adapters' ranks (the config's {@code r} is the largest such sum; modules with a smaller sum get
     * a {@code rank_pattern} entry). {@code lora_alpha} equals the rank everywhere ({@code alpha_pattern} likewise)
     * and {@code use_rslora} is false, so scaling is exactly 1 and the weights live in A alone. Other config fields
     * come from the first adapter; {@code target_modules} is the union. Factors are written in the first adapter's
     * dtype of each module. The weights file is written first and the config last, each atomically.
     *
     * @return the rank of the combined adapter (the config's r)
     */
    public static int cat(List<LoraAdapter> adapters, List<Double> weights, Path outputDir) {
        checkWeights(adapters, weights);
        boolean fanInFanOut = adapters.get(0).fanInFanOut();
        Map<String, List<Integer>> users = new LinkedHashMap<>();
        Map<String, LoraAdapter.Module> shapes = new LinkedHashMap<>();
        for (int i = 0; i < adapters.size(); i++) {
            LoraAdapter adapter = adapters.get(i);
            if (adapter.fanInFanOut() != fanInFanOut) {
                throw new KilnException("LoRA cat: adapter " + adapter.dir() + " has fan_in_fan_out = "
                        + adapter.fanInFanOut() + " but " + adapters.get(0).dir() + " has " + fanInFanOut
                        + "; they cannot adapt the same layers");
            }
            for (LoraAdapter.Module m : adapter.modules().values()) {
                LoraAdapter.Module first = shapes.putIfAbsent(m.name(), m);
                if (first != null && (first.in() != m.in() || first.out() != m.out())) {
                    throw new KilnException("LoRA cat: module '" + m.name() + "' is " + m.out() + " x " + m.in()
                            + " in adapter " + adapter.dir() + " but " + first.out() + " x " + first.in()
                            + " in an earlier adapter");
                }
                users.computeIfAbsent(m.name(), k -> new ArrayList<>()).add(i);
            }
        }
        Map<String, Integer> ranks = new LinkedHashMap<>();
        List<TensorSpec> specs = new ArrayList<>();
        int maxRank = 0;
        for (Map.Entry<String, List<Integer>> e : users.entrySet()) {
            String module = e.getKey();
            int rank = 0;
            for (int i : e.getValue()) {
                rank += adapters.get(i).modules().get(module).rank();
            }
            ranks.put(module, rank);
            maxRank = Math.max(maxRank, rank);
            LoraAdapter.Module shape = shapes.get(module);
            DType dtype = adapters.get(e.getValue().get(0)).dtype(adapters.get(e.getValue().get(0)).modules()
                    .get(module));
            specs.add(new TensorSpec(LoraAdapter.KEY_PREFIX + module + ".lora_A.weight", dtype,
                    new long[] {rank, shape.in()}));
            specs.add(new TensorSpec(LoraAdapter.KEY_PREFIX + module + ".lora_B.weight", dtype,
                    new long[] {shape.out(), rank}));
        }
        ObjectNode config = adapters.get(0).config();
        config.put("r", maxRank);
        config.put("lora_alpha", maxRank);
        config.put("use_rslora", false);
        ObjectNode rankPattern = Json.MAPPER.createObjectNode();
        ObjectNode alphaPattern = Json.MAPPER.createObjectNode();
        for (Map.Entry<String, Integer> e : ranks.entrySet()) {
            if (e.getValue() != maxRank) {
                // Full module paths as keys: PEFT matches keys as (.*\.)?key$, so a full path names one module.
                rankPattern.put(e.getKey(), e.getValue());
                alphaPattern.put(e.getKey(), e.getValue());
            }
        }
        config.set("rank_pattern", rankPattern);
        config.set("alpha_pattern", alphaPattern);
        config.set("target_modules", unionTargets(adapters, users.keySet()));
        try {
            Files.createDirectories(outputDir);
        } catch (IOException e) {
            throw new KilnException("LoRA cat: cannot create the output folder " + outputDir + ": " + e, e);
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("kiln.version", KilnVersion.get());
        metadata.put("kiln.lora.combination", "cat");
        metadata.put("kiln.lora.adapters", describe(adapters, weights));
        try (SafetensorsWriter writer = SafetensorsWriter.create(outputDir.resolve(LoraAdapter.WEIGHTS_NAME),
                metadata, specs)) {
            for (Map.Entry<String, List<Integer>> e : users.entrySet()) {
                String module = e.getKey();
                try (NDManager manager = NDManager.newBaseManager(); NDList as = new NDList(); NDList bs = new NDList()) {
                    for (int i : e.getValue()) {
                        LoraAdapter adapter = adapters.get(i);
                        LoraAdapter.Module m = adapter.modules().get(module);
                        as.add(adapter.loraA(m, manager).mul((float) (weights.get(i) * m.scaling())));
                        bs.add(adapter.loraB(m, manager));
                    }
                    writer.write(LoraAdapter.KEY_PREFIX + module + ".lora_A.weight", NDArrays.concat(as, 0));
                    writer.write(LoraAdapter.KEY_PREFIX + module + ".lora_B.weight", NDArrays.concat(bs, 1));
                }
            }
            writer.commit();
        }
        try {
            AtomicFiles.writeString(outputDir.resolve(LoraAdapter.CONFIG_NAME),
                    Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(config));
        } catch (IOException e) {
            throw new KilnException("LoRA cat: cannot write " + outputDir.resolve(LoraAdapter.CONFIG_NAME) + ": " + e,
                    e);
        }
        return maxRank;
    }

    /**
     * The union of the adapters' {@code target_modules}: a list when every adapter lists names, otherwise (some
     * give a regex) the adapted module paths themselves, which PEFT matches as suffixes.
     */
    private static ArrayNode unionTargets(List<LoraAdapter> adapters, Set<String> modules) {
        Set<String> names = new LinkedHashSet<>();
        boolean allLists = true;
        for (LoraAdapter a : adapters) {
            var targets = a.config().get("target_modules");
            if (targets != null && targets.isArray()) {
                targets.forEach(t -> names.add(t.asText()));
            } else {
                allLists = false;
            }
        }
        ArrayNode out = Json.MAPPER.createArrayNode();
        (allLists ? names : modules).forEach(out::add);
        return out;
    }

    private static void checkWeights(List<LoraAdapter> adapters, List<Double> weights) {
        if (adapters.isEmpty()) {
            throw new KilnException("LoRA merge: no adapters given");
        }
        if (weights.size() != adapters.size()) {
            throw new KilnException("LoRA merge: " + weights.size() + " weights for " + adapters.size() + " adapters");
        }
        for (int i = 0; i < weights.size(); i++) {
            Double w = weights.get(i);
            if (w == null || !Double.isFinite(w)) {
                throw new KilnException("LoRA merge: the weight of adapter " + adapters.get(i).dir()
                        + " must be a finite number, got " + w);
            }
        }
    }

    private static String describe(List<LoraAdapter> adapters, List<Double> weights) {
        List<Map<String, Object>> list = new ArrayList<>();
        for (int i = 0; i < adapters.size(); i++) {
            Map<String, Object> d = new LinkedHashMap<>();
            d.put("path", adapters.get(i).dir().toString());
            d.put("weight", weights.get(i));
            d.put("r", adapters.get(i).r());
            d.put("lora_alpha", adapters.get(i).alpha());
            list.add(d);
        }
        try {
            return Json.MAPPER.writeValueAsString(list);
        } catch (IOException e) {
            throw new KilnException("LoRA merge: cannot encode metadata: " + e, e);
        }
    }

    /** A random source that depends only on the seed and the tensor name, so results are reproducible. */
    static SplittableRandom random(long seed, String name) {
        long h = 0xcbf29ce484222325L;
        for (byte b : name.getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xff)) * 0x100000001b3L;
        }
        long z = (seed ^ 0x4c6f5241L) * 0x9e3779b97f4a7c15L + h;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return new SplittableRandom(z ^ (z >>> 31));
    }
}
