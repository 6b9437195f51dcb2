package dev.kiln.merge;

import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.merge.MagnitudeTrim;
import dev.kiln.spi.merge.MergeMethod;
import java.util.List;

/**
 * The merge family: linear, task-arithmetic, ties, dare, breadcrumbs, slerp, model-stock, fisher and pcb.
 *
 * <p>Every method works on one tensor name at a time, so densities, top-k selections, norms and angles are per
 * tensor, except that ties and breadcrumbs may rank magnitudes over the whole model ({@code trim-scope=model}, found
 * by the core in a first pass through {@link dev.kiln.spi.merge.MagnitudeTrim}). Defaults follow mergekit where it has the method (density 1.0 means no
 * trimming until set; {@code normalize} on for linear and ties, off for the others), so recipes port unchanged.
 * Per-model {@code density} and {@code gamma} overrides ({@code ModelTensor.overrides}) take precedence over the
 * method's parameter.
 */
public final class MergeTechniques implements TechniqueProvider {

    private static final String MERGEKIT = "arcee-ai/mergekit (per-tensor semantics and defaults)";

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(linear(), taskArithmetic(), ties(), dare(), breadcrumbs(), slerp(), modelStock(), fisher(),
                pcb());
    }

    private static ParameterSpec lambda(double defaultValue) {
        return ParameterSpec.decimal("lambda", defaultValue,
                "scale of the merged task vector added to the base (negative values subtract it)")
                .between(-1000, 1000);
    }

    private static ParameterSpec density(String what) {
        return ParameterSpec.decimal("density", 1.0, what).greaterThan(0).atMost(1);
    }

    private static ParameterSpec signMethod() {
        return ParameterSpec.choice("sign-method", "sum", List.of("sum", "count"),
                "sign election per element: sign of the summed weighted values (sum, TIES 'mass') or of the "
                        + "summed signs (count); a tie elects +");
    }

    private static ParameterSpec consensus() {
        return ParameterSpec.choice("consensus", "none", List.of("none", "ties"),
                "none sums the sparsified task vectors; ties keeps only the entries agreeing with the elected sign");
    }

    private static ParameterSpec trimScope() {
        return ParameterSpec.choice("trim-scope", "tensor", List.of("tensor", "model"),
                "where magnitudes are ranked for trimming: per tensor (mergekit) or over all float tensors of each "
                        + "model together, one threshold per model (the TIES paper's global top-k); density then "
                        + "counts over the whole model");
    }

    private static ParameterSpec normalize(boolean defaultValue, String what) {
        return ParameterSpec.flag("normalize", defaultValue, what);
    }

    static SimpleTechnique<MergeMethod> linear() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "linear",
                "Weighted average of the models' tensors (model soup); no base needed",
                List.of(normalize(true, "divide by the sum of the weights")),
                p -> new LinearMerge(p.getBoolean("normalize")))
                .withReference("Wortsman et al. 2022, Model soups (arXiv 2203.05482); " + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> taskArithmetic() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "task-arithmetic",
                "Adds the weighted sum of task vectors (model minus base) to the base, scaled by lambda",
                List.of(lambda(1.0), normalize(false, "divide the weighted sum by the sum of the weights")),
                p -> gta(p, "task-arithmetic", TaskVectorMerge.Sparsifier.NONE, false, 1, 0,
                        TaskVectorMerge.Rescale.NONE))
                .withReference("Ilharco et al. 2023, Editing Models with Task Arithmetic (arXiv 2212.04089); "
                        + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> ties() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "ties",
                "TIES: per tensor (or over the whole model, trim-scope) keep each task vector's "
                        + "round(density*numel) largest magnitudes (equal magnitudes taken in index order), elect a sign per element, and average the agreeing "
                        + "entries weighted by the model weights (mergekit's disjoint mean)",
                List.of(density("fraction of each task vector kept by magnitude, per tensor; 1 keeps all "
                                + "(mergekit default); per-model override 'density'"),
                        lambda(1.0), signMethod(),
                        normalize(true, "divide by the summed weights of the agreeing models (disjoint mean); "
                                + "false sums them"),
                        trimScope()),
                p -> gta(p, "ties", TaskVectorMerge.Sparsifier.MAGNITUDE, true, p.getDouble("density"), 0,
                        TaskVectorMerge.Rescale.NONE))
                .withReference("Yadav et al. 2023, TIES-Merging (arXiv 2306.01708); " + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> dare() {
        return dare(TaskVectorMerge.ENGINE_MASKS);
    }

    static SimpleTechnique<MergeMethod> dare(TaskVectorMerge.KeepMasks masks) {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "dare",
                "DARE: drop each task-vector entry with probability 1 - density (masks seeded from the merge's "
                        + "random source), rescale the survivors, then sum (dare_linear) or apply the TIES sign "
                        + "consensus (dare_ties)",
                List.of(density("probability of keeping each task-vector entry (drop p = 1 - density); "
                                + "per-model override 'density'"),
                        ParameterSpec.choice("rescale", "inverse", List.of("inverse", "l1", "none"),
                                "inverse divides the survivors by density (the paper); l1 restores the task "
                                        + "vector's L1 norm (mergekit since v0.1); none leaves them"),
                        consensus(), signMethod(), lambda(1.0),
                        normalize(false, "divide by the summed weights of the (agreeing) models")),
                p -> gta(p, "dare", TaskVectorMerge.Sparsifier.RANDOM, p.getString("consensus").equals("ties"),
                        p.getDouble("density"), 0, rescale(p.getString("rescale")), masks))
                .withReference("Yu et al. 2024, Language Models are Super Mario (DARE, arXiv 2311.03099); "
                        + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> breadcrumbs() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "breadcrumbs",
                "Model Breadcrumbs: per tensor drop the largest gamma fraction of each task vector by magnitude "
                        + "(outliers) and enough of the smallest that density remains, then sum",
                List.of(density("fraction of each task vector kept; 1 keeps all; per-model override 'density'"),
                        ParameterSpec.decimal("gamma", 0.01, "fraction of largest-magnitude entries dropped "
                                + "(reduced when density leaves no room); per-model override 'gamma'")
                                .between(0, 1),
                        consensus(), signMethod(), lambda(1.0),
                        normalize(false, "divide by the summed weights of the (agreeing) models"), trimScope()),
                p -> gta(p, "breadcrumbs", TaskVectorMerge.Sparsifier.OUTLIERS,
                        p.getString("consensus").equals("ties"), p.getDouble("density"), p.getDouble("gamma"),
                        TaskVectorMerge.Rescale.NONE))
                .withReference("Davari and Belilovsky 2024, Model Breadcrumbs (arXiv 2312.06795); " + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> slerp() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "slerp",
                "Spherical interpolation of exactly two models by t over each flattened tensor; linear "
                        + "interpolation when they are nearly colinear (|cos| > 0.9995)",
                List.of(ParameterSpec.decimal("t", 0.5, "position between model 0 (t = 0) and model 1 (t = 1)")
                        .between(0, 1)),
                p -> new SlerpMerge(p.getDouble("t")))
                .withReference("Shoemake 1985, Animating rotation with quaternion curves; " + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> modelStock() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "model-stock",
                "Model Stock: interpolate from the base to the models' mean by t = N cos/(1 + (N-1) cos), cos "
                        + "being the mean pairwise cosine of the task vectors; needs a base and two or more models",
                List.of(ParameterSpec.flag("filter-wise", false,
                        "one ratio per row of the last axis instead of one per tensor")),
                p -> new ModelStockMerge(p.getBoolean("filter-wise")))
                .withReference("Jang et al. 2024, Model Stock (arXiv 2403.19522); " + MERGEKIT);
    }

    static SimpleTechnique<MergeMethod> fisher() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "fisher",
                "Fisher-weighted averaging: per element sum_i w_i F_i theta_i / sum_i w_i F_i, with each model's "
                        + "diagonal Fisher F_i (its statistic) floored at epsilon",
                List.of(ParameterSpec.decimal("epsilon", 1e-6, "floor on the Fisher values").greaterThan(0)),
                p -> new FisherMerge(p.getDouble("epsilon")))
                .withReference("Matena and Raffel 2022, Merging Models with Fisher-Weighted Averaging "
                        + "(arXiv 2111.09832)");
    }

    static SimpleTechnique<MergeMethod> pcb() {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, "pcb",
                "PCB-Merging: score task-vector entries by intra-balancing (own magnitude) times inter-balancing "
                        + "(agreement with the other tasks), keep the top ratio per model and average the "
                        + "(clipped) task vectors weighted by the min-max normalized scores",
                List.of(ParameterSpec.decimal("ratio", 0.1, "fraction of each task vector kept by score")
                                .greaterThan(0).atMost(1),
                        ParameterSpec.decimal("clip-ratio", 1e-4,
                                "magnitudes are clipped to their order statistics at this fraction from each end")
                                .atLeast(0).lessThan(0.5),
                        ParameterSpec.decimal("temperature", 0.0,
                                "intra-balancing temperature; 0 uses the number of models (the paper)").atLeast(0),
                        lambda(1.0)),
                p -> new PcbMerge(p.getDouble("ratio"), p.getDouble("clip-ratio"), p.getDouble("temperature"),
                        p.getDouble("lambda")))
                .withReference("Du et al. 2024, Parameter Competition Balancing for Model Merging (arXiv 2410.02396),"
                        + " reference code duguodong7/pcb-merging");
    }

    private static TaskVectorMerge.Rescale rescale(String name) {
        switch (name) {
            case "l1":
                return TaskVectorMerge.Rescale.L1;
            case "none":
                return TaskVectorMerge.Rescale.NONE;
            default:
                return TaskVectorMerge.Rescale.INVERSE;
        }
    }

    private static MergeMethod gta(Parameters p, String id, TaskVectorMerge.Sparsifier sparsifier, boolean consensus,
            double density, double gamma, TaskVectorMerge.Rescale rescale) {
        return gta(p, id, sparsifier, consensus, density, gamma, rescale, TaskVectorMerge.ENGINE_MASKS);
    }

    private static MergeMethod gta(Parameters p, String id, TaskVectorMerge.Sparsifier sparsifier, boolean consensus,
            double density, double gamma, TaskVectorMerge.Rescale rescale, TaskVectorMerge.KeepMasks masks) {
        boolean count = p.asMap().containsKey("sign-method") && p.getString("sign-method").equals("count");
        if (sparsifier == TaskVectorMerge.Sparsifier.MAGNITUDE || sparsifier == TaskVectorMerge.Sparsifier.OUTLIERS) {
            MagnitudeTrim.TrimScope scope = p.getString("trim-scope").equals("model") ? MagnitudeTrim.TrimScope.MODEL
                    : MagnitudeTrim.TrimScope.TENSOR;
            return TaskVectorMerge.trimmed(id, sparsifier, consensus, count, p.getBoolean("normalize"),
                    p.getDouble("lambda"), density, gamma, scope);
        }
        return new TaskVectorMerge(id, sparsifier, consensus, count, p.getBoolean("normalize"),
                p.getDouble("lambda"), density, gamma, rescale, masks);
    }
}
