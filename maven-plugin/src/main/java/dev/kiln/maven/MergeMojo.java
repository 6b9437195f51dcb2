package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.util.List;
import java.util.Map;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugins.annotations.LifecyclePhase;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Merges model checkpoints (safetensors) with a merge method (ties, dare, task-arithmetic, slerp, ...), configured
 * either in the pom ({@code method}, {@code params}, {@code base}, {@code models}) or by a mergekit YAML recipe
 * ({@code config}). Skipped when the output is up to date with its inputs and configuration. For method
 * {@code fisher}, per-model Fisher statistics come from each model's {@code fisher} file, from
 * {@code STEM.fisher.safetensors} beside the checkpoint {@code STEM.safetensors}, or are computed first from
 * {@code fisherDataset}. With {@code adapters} instead of {@code models}, PEFT LoRA adapters are combined as
 * {@code adapterCombination} says: summed into {@code base}, merged by {@code method} on their dense updates, or
 * concatenated ({@code cat}) into one adapter.
 */
@Mojo(name = "merge", defaultPhase = LifecyclePhase.PACKAGE, threadSafe = true)
public class MergeMojo extends AbstractOutputMojo {

    /** The merge method id, e.g. {@code ties}; see {@code mvn kiln:list -Dkiln.kind=merge}. */
    @Parameter(property = "kiln.method")
    private String method;

    /** The method's parameters, e.g. {@code <density>0.5</density>}. */
    @Parameter
    private Map<String, String> params;

    /** The base model the task vectors are taken against (needed by task-vector methods). */
    @Parameter
    private File base;

    /** The models to merge, each with {@code path}, optional {@code weight} and per-model {@code params}. */
    @Parameter
    private List<ModelEntry> models;

    /**
     * PEFT LoRA adapters to combine instead of {@code models}, each an {@code adapter} with {@code path} (a folder
     * holding {@code adapter_config.json} and {@code adapter_model.safetensors}), optional {@code weight} (1 when
     * absent) and per-adapter {@code params} that override the method's. An adapted module M updates the base
     * tensor M.weight.
     */
    @Parameter
    private List<ModelEntry> adapters;

    /**
     * How {@code adapters} are combined. {@code sum} (the default without {@code method}): base + sum of weight x
     * update, a full checkpoint. {@code method} (the default with {@code method}): the merge method (ties, dare, ...)
     * applied to the adapters' updates as task vectors, added to the base; this densifies each adapted layer to a
     * full matrix per adapter. {@code cat}: one PEFT adapter of rank sum(r) whose update is exactly the weighted sum,
     * written to the folder {@code output}; needs no base.
     */
    @Parameter(property = "kiln.adapterCombination")
    private String adapterCombination;

    /** A mergekit-style YAML recipe; exclusive with method, base and models. Paths in it are relative to it. */
    @Parameter(property = "kiln.mergeConfig")
    private File config;

    /** The merged checkpoint; when sharded, the shards and index are written next to it, named after it. */
    @Parameter(property = "kiln.output", defaultValue = "${project.build.directory}/kiln/merged.safetensors")
    private File output;

    /** Seed of the random drop masks (DARE); each tensor's random source derives from it and the tensor name. */
    @Parameter(property = "kiln.seed", defaultValue = "42")
    private long seed;

    /** The float dtype written ({@code float32}, {@code float16}, {@code bfloat16}); the inputs' when absent. */
    @Parameter(property = "kiln.outputDtype")
    private String outputDtype;

    /** The most tensor bytes per output shard; 0 writes one file. */
    @Parameter(property = "kiln.maxShardBytes", defaultValue = "0")
    private long maxShardBytes;

    /**
     * Tensors merged at once; 0 picks up to 4 by the number of cores. With more than one, each merge thread runs
     * libtorch single-threaded (the threads are the parallelism), whatever {@code kiln.threads} says.
     */
    @Parameter(property = "kiln.mergeThreads", defaultValue = "0")
    private int mergeThreads;

    /** Accept NaN or infinite weights in the inputs instead of failing. */
    @Parameter(property = "kiln.allowNonFinite", defaultValue = "false")
    private boolean allowNonFinite;

    /**
     * A labelled dataset (IDX folder, image folder or CSV; its training split is used) to compute each model's
     * diagonal Fisher from before merging, written as {@code STEM.fisher.safetensors} beside the checkpoint (or to
     * the model's {@code fisher} file) and reused while the checkpoint, data and Fisher settings are unchanged.
     * Needed by method {@code fisher} unless every Fisher file already exists. Models must be Kiln classifier
     * checkpoints (as {@code kiln:train} writes them).
     */
    @Parameter(property = "kiln.fisherDataset")
    private File fisherDataset;

    /** Samples the Fisher is averaged over (batch-1 gradients, so cost grows linearly); capped at the data size. */
    @Parameter(property = "kiln.fisherSamples", defaultValue = "256")
    private int fisherSamples;

    /**
     * {@code empirical}: gradients of the log-likelihood at the dataset's labels; {@code true}: at labels sampled
     * from the model's predictive distribution (a Monte Carlo estimate of the true Fisher).
     */
    @Parameter(property = "kiln.fisherMode", defaultValue = "empirical")
    private String fisherMode;

    /** Classifier of the attached checkpoint. */
    @Parameter(defaultValue = "merged")
    private String classifier;

    @Override
    protected String workerGoal() {
        return "merge";
    }

    @Override
    protected ObjectNode configuration() throws MojoFailureException {
        ObjectNode c = newConfiguration();
        boolean hasAdapters = adapters != null && !adapters.isEmpty();
        boolean explicit = method != null || base != null || (models != null && !models.isEmpty()) || hasAdapters;
        if (config != null && explicit) {
            throw new MojoFailureException("kiln:merge: <config> (a mergekit YAML recipe) cannot be combined with "
                    + "<method>, <base>, <models> or <adapters>");
        }
        if (config == null && method == null && !hasAdapters) {
            throw new MojoFailureException("kiln:merge: set <method> and <models>, or <config> (a mergekit YAML "
                    + "recipe)");
        }
        if (config != null) {
            c.put("config", config.getAbsolutePath());
        }
        if (method != null) {
            c.put("method", method);
        }
        ObjectNode p = c.putObject("params");
        if (params != null) {
            params.forEach((k, v) -> p.put(k, v == null ? "" : v.trim()));
        }
        if (base != null) {
            c.put("base", base.getAbsolutePath());
        }
        ArrayNode list = c.putArray("models");
        if (models != null) {
            for (ModelEntry m : models) {
                if (m.getPath() == null) {
                    throw new MojoFailureException("kiln:merge: every <model> needs a <path>");
                }
                ObjectNode entry = list.addObject();
                entry.put("path", m.getPath().getAbsolutePath());
                if (m.getWeight() != null) {
                    entry.put("weight", m.getWeight());
                }
                if (m.getFisher() != null) {
                    entry.put("fisher", m.getFisher().getAbsolutePath());
                }
                ObjectNode mp = entry.putObject("params");
                if (m.getParams() != null) {
                    m.getParams().forEach((k, v) -> mp.put(k, v == null ? "" : v.trim()));
                }
            }
        }
        if (hasAdapters) {
            ArrayNode adapterList = c.putArray("adapters");
            for (ModelEntry a : adapters) {
                if (a.getPath() == null) {
                    throw new MojoFailureException("kiln:merge: every <adapter> needs a <path> (a PEFT adapter folder)");
                }
                if (a.getFisher() != null) {
                    throw new MojoFailureException("kiln:merge: <adapter> " + a.getPath() + " cannot take a <fisher>");
                }
                ObjectNode entry = adapterList.addObject();
                entry.put("path", a.getPath().getAbsolutePath());
                if (a.getWeight() != null) {
                    entry.put("weight", a.getWeight());
                }
                ObjectNode ap = entry.putObject("params");
                if (a.getParams() != null) {
                    a.getParams().forEach((k, v) -> ap.put(k, v == null ? "" : v.trim()));
                }
            }
        }
        if (adapterCombination != null && !adapterCombination.isBlank()) {
            c.put("adapterCombination", adapterCombination.trim());
        }
        c.put("output", output.getAbsolutePath());
        c.put("threads", mergeThreads);
        c.put("seed", seed);
        if (outputDtype != null && !outputDtype.isBlank()) {
            c.put("outputDtype", outputDtype.trim());
        }
        c.put("maxShardBytes", maxShardBytes);
        c.put("allowNonFinite", allowNonFinite);
        c.put("force", force());
        if (fisherDataset != null) {
            c.put("fisherDataset", fisherDataset.getAbsolutePath());
        }
        if (fisherSamples < 1) {
            throw new MojoFailureException("kiln:merge: fisherSamples must be at least 1, got " + fisherSamples);
        }
        c.put("fisherSamples", fisherSamples);
        if (fisherMode != null && !fisherMode.isBlank()) {
            c.put("fisherMode", fisherMode.trim());
        }
        return c;
    }

    @Override
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
        Object produced = result.get("output");
        // A sharded output is attached by its index; the shards it names sit next to it.
        String type = produced != null && produced.toString().endsWith(".json") ? "json" : "safetensors";
        attach(produced, type, classifier);
    }
}
