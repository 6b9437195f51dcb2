package dev.kiln.compress;

import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import java.util.List;

/**
 * The compress family: {@code magnitude}, {@code nm}, {@code structured}, {@code low-rank}, {@code int8} and
 * {@code low-rank-sparse}. Listed in {@code META-INF/services/dev.kiln.spi.TechniqueProvider}.
 */
public final class CompressTechniques implements TechniqueProvider {

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(magnitude(), nm(), structured(), lowRank(), int8(), lowRankSparse());
    }

    private static Technique<?> magnitude() {
        return SimpleTechnique.of(Kind.COMPRESS, "magnitude",
                "Unstructured pruning: keeps the largest-magnitude entries of each tensor, zeroes the rest",
                List.of(ParameterSpec.decimal("sparsity", 0.5, "fraction of entries set to zero").between(0, 1)),
                p -> new MagnitudePruning(p.getDouble("sparsity")))
                .withReference("Han et al. 2015, Learning both Weights and Connections; "
                        + "torch.nn.utils.prune.l1_unstructured");
    }

    private static Technique<?> nm() {
        return SimpleTechnique.of(Kind.COMPRESS, "nm",
                "N:M semi-structured sparsity: keeps the N largest |w| in every M consecutive input weights",
                List.of(ParameterSpec.integer("n", 2L, "weights kept per group").atLeast(1),
                        ParameterSpec.integer("m", 4L, "group length along the input dimension").atLeast(1)),
                p -> new NmSparsity(p.getInt("n"), p.getInt("m")))
                .withReference("Mishra et al. 2021, Accelerating Sparse Deep Neural Networks (NVIDIA 2:4)");
    }

    private static Technique<?> structured() {
        return SimpleTechnique.of(Kind.COMPRESS, "structured",
                "Removes whole output rows (channels) with the smallest L2 norm",
                List.of(ParameterSpec.decimal("sparsity", 0.5, "fraction of output rows removed").atLeast(0)
                        .lessThan(1)),
                p -> new StructuredPruning(p.getDouble("sparsity")))
                .withReference("Li et al. 2017, Pruning Filters for Efficient ConvNets; "
                        + "torch.nn.utils.prune.ln_structured");
    }

    private static List<ParameterSpec> lowRankSpecs() {
        return List.of(
                ParameterSpec.integer("rank", 0L, "kept rank; 0 chooses the rank by 'energy'").atLeast(0),
                ParameterSpec.decimal("energy", 0.9, "fraction of the squared Frobenius norm kept when rank is 0")
                        .greaterThan(0).atMost(1),
                ParameterSpec.integer("oversampling", 8L, "extra sketch columns of the range finder").atLeast(0),
                ParameterSpec.integer("power-iterations", 2L, "subspace iterations of the range finder")
                        .between(0, 20),
                ParameterSpec.integer("seed", 0L, "seed of the Gaussian test matrix"));
    }

    private static LowRank.Settings lowRankSettings(Parameters p) {
        return new LowRank.Settings(p.getInt("rank"), p.getDouble("energy"), p.getInt("oversampling"),
                p.getInt("power-iterations"), p.getLong("seed"));
    }

    private static Technique<?> lowRank() {
        return SimpleTechnique.of(Kind.COMPRESS, "low-rank",
                "Truncated SVD (randomized range finder) by fixed rank or kept energy, stored as two thin factors",
                lowRankSpecs(), p -> new LowRank(lowRankSettings(p)))
                .withReference("Halko, Martinsson and Tropp 2011, Finding Structure with Randomness");
    }

    private static Technique<?> int8() {
        return SimpleTechnique.of(Kind.COMPRESS, "int8",
                "Weight-only symmetric int8 quantization with one scale per output channel", List.of(),
                p -> new Int8Quantization())
                .withReference("torchao Int8WeightOnlyConfig (per-channel symmetric)");
    }

    private static Technique<?> lowRankSparse() {
        List<ParameterSpec> specs = new java.util.ArrayList<>(lowRankSpecs());
        specs.add(ParameterSpec.decimal("residual-density", 0.1,
                "fraction of the residual W - UV kept, largest magnitudes first").between(0, 1));
        return SimpleTechnique.of(Kind.COMPRESS, "low-rank-sparse",
                "Low-rank factors plus a sparse residual of the largest remaining entries", specs,
                p -> new LowRankSparse(lowRankSettings(p), p.getDouble("residual-density")))
                .withReference("Li et al. 2024, MC-SMoE (ICLR), compression step after LoSparse (Li et al. 2023)");
    }
}
