package dev.kiln.maven;

import java.io.File;
import java.util.Map;

/**
 * One model of a {@code kiln:merge}: {@code <model><path>...</path><weight>0.5</weight><params><density>0.7</density>
 * </params><fisher>...</fisher></model>}; also one LoRA adapter ({@code <adapter>}, where {@code path} is the PEFT
 * adapter folder and {@code fisher} is not allowed).
 */
public class ModelEntry {
    /**
     * The checkpoint: a safetensors file, a folder with {@code model.safetensors} or a sharded index; for an adapter,
     * the folder with {@code adapter_config.json} and {@code adapter_model.safetensors}.
     */
    private File path;

    /** The model's weight in the merge (mergekit's {@code weight}); 1 when absent. */
    private Double weight;

    /** Per-model method parameters (numbers), e.g. {@code density}, overriding the method's own. */
    private Map<String, String> params;

    /**
     * The model's per-element statistic for statistic-weighted methods: a safetensors file with the checkpoint's
     * tensor names, e.g. the diagonal Fisher for {@code fisher}. When absent, {@code fisher} uses
     * {@code STEM.fisher.safetensors} beside the checkpoint {@code STEM.safetensors} (computed when the merge sets {@code fisherDataset}).
     */
    private File fisher;

    public File getPath() {
        return path;
    }

    public void setPath(File path) {
        this.path = path;
    }

    public Double getWeight() {
        return weight;
    }

    public void setWeight(Double weight) {
        this.weight = weight;
    }

    public File getFisher() {
        return fisher;
    }

    public void setFisher(File fisher) {
        this.fisher = fisher;
    }

    public Map<String, String> getParams() {
        return params;
    }

    public void setParams(Map<String, String> params) {
        this.params = params;
    }
}
