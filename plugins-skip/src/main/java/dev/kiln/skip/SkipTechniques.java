package dev.kiln.skip;

import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.skip.SkipPolicy;
import java.util.List;

/**
 * The skip family: unified, contiguous, skipdecode, ffn-skip and layerdrop. Each policy declares the KV cache rule it
 * keeps, so a decoder can run it with a cache.
 */
public final class SkipTechniques implements TechniqueProvider {

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(unified(), contiguous(), skipDecode(), ffnSkip(), layerDrop());
    }

    static SimpleTechnique<SkipPolicy> unified() {
        return SimpleTechnique.<SkipPolicy>of(Kind.SKIP, UnifiedSkip.ID,
                "Runs the same evenly spaced layers (first and last always) for every generated token",
                List.of(ParameterSpec.decimal("speedup", 2.0, "target layer-count speedup: keeps round(L / speedup) "
                                + "layers, at least 2").atLeast(1),
                        ParameterSpec.choice("prefill", "full", List.of("full", "same"),
                                "full runs every layer on the prompt; same uses the kept layers there too")),
                p -> new UnifiedSkip(p.getDouble("speedup"), p.getString("prefill").equals("full")))
                .withReference("Liu, Meng, Zhou 2024, Accelerating Inference in LLMs with a Unified Layer Skipping "
                        + "Strategy (arXiv 2404.06954)");
    }

    static SimpleTechnique<SkipPolicy> contiguous() {
        return SimpleTechnique.<SkipPolicy>of(Kind.SKIP, ContiguousSkip.ID,
                "Drops one contiguous block of layers at the top, bottom or middle",
                List.of(ParameterSpec.decimal("drop", 0.25, "fraction of layers (below 1) or number of layers "
                                + "(1 or more) to drop").atLeast(0),
                        ParameterSpec.choice("where", "top", List.of("top", "bottom", "middle"),
                                "which block is dropped")),
                p -> new ContiguousSkip(p.getDouble("drop"), p.getString("where")))
                .withReference("Gromov et al. 2024, The Unreasonable Ineffectiveness of the Deeper Layers "
                        + "(arXiv 2403.17887)");
    }

    static SimpleTechnique<SkipPolicy> skipDecode() {
        return SimpleTechnique.<SkipPolicy>of(Kind.SKIP, SkipDecode.ID,
                "Per-position depth falling linearly from max-depth to min-depth; skips the lower layers",
                List.of(ParameterSpec.integer("max-depth", 0L, "layers run at position 0 (0 means all)").atLeast(0),
                        ParameterSpec.integer("min-depth", 1L, "layers run from max-position on").atLeast(1),
                        ParameterSpec.integer("max-position", 64L, "position where the depth reaches min-depth")
                                .atLeast(1)),
                p -> new SkipDecode(p.getInt("max-depth"), p.getInt("min-depth"), p.getInt("max-position")))
                .withReference("Del Corro et al. 2023, SkipDecode (arXiv 2307.02628)");
    }

    static SimpleTechnique<SkipPolicy> ffnSkip() {
        return SimpleTechnique.<SkipPolicy>of(Kind.SKIP, FfnSkip.ID,
                "Skips the FFNs after one whose input and output are nearly parallel; attention always runs",
                List.of(ParameterSpec.decimal("threshold", 0.99, "cosine similarity above which later FFNs are "
                                + "skipped").between(-1, 1),
                        ParameterSpec.integer("warmup-tokens", 4L, "decode passes that run every FFN").atLeast(0),
                        ParameterSpec.integer("protect-first", 1L, "first layers whose FFN always runs").atLeast(0),
                        ParameterSpec.integer("protect-last", 1L, "last layers whose FFN always runs").atLeast(0)),
                p -> new FfnSkip(p.getDouble("threshold"), p.getInt("warmup-tokens"), p.getInt("protect-first"),
                        p.getInt("protect-last")))
                .withReference("Jaiswal et al. 2024, FFN-SkipLLM (arXiv 2404.03865)");
    }

    static SimpleTechnique<SkipPolicy> layerDrop() {
        return SimpleTechnique.<SkipPolicy>of(Kind.SKIP, LayerDrop.ID,
                "Training-time layer dropout with probability rate * l / (L - 1), optionally with LayerSkip's "
                        + "early-exit loss; every layer runs at inference",
                List.of(ParameterSpec.decimal("rate", 0.1, "drop probability of the last layer").between(0, 1),
                        ParameterSpec.decimal("early-exit-scale", 0.0, "weight of the early exits relative to the "
                                + "final output before normalisation (LayerSkip e_scale); 0 turns the early-exit "
                                + "loss off").atLeast(0),
                        ParameterSpec.choice("early-exit-scale-fn", "linear",
                                List.of("uniform", "linear", "sum", "sqrt", "inv", "inv-sqrt"),
                                "how an exit's weight grows with its layer l (0-based): 1, l+1, the sum 1..l+1, "
                                        + "sqrt(l+1), 1/(l+1), 1/sqrt(l+1)"),
                        ParameterSpec.choice("early-exit-curriculum", "gradual",
                                List.of("gradual", "rotational", "none"),
                                "which exits are on at a step: gradual (top layers first over early-exit-ramp "
                                        + "steps), rotational (one layer per step in turn), none (all)"),
                        ParameterSpec.integer("early-exit-ramp", 0L, "steps over which the gradual curriculum "
                                + "turns exits on (torchtune: 0.5 x the run's steps); 0 turns all on at once")
                                .atLeast(0)),
                p -> new LayerDrop(p.getDouble("rate"), p.getDouble("early-exit-scale"),
                        LayerDrop.ScaleFn.parse(p.getString("early-exit-scale-fn")),
                        LayerDrop.Curriculum.parse(p.getString("early-exit-curriculum")),
                        p.getInt("early-exit-ramp")))
                .withReference("Elhoushi et al. 2024, LayerSkip (arXiv 2404.16710): linear dropout schedule; "
                        + "early-exit loss as torchtune's early_exit_loss");
    }
}
