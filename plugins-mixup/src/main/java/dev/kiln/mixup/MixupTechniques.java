package dev.kiln.mixup;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.augment.Augmentation;
import java.util.ArrayList;
import java.util.List;

/**
 * The mixed-sample augmentations of this jar: {@code mixup}, {@code cutmix}, {@code fmix}, {@code resizemix},
 * {@code mixup-cutmix} and {@code decoupled}.
 *
 * <p>Every technique also takes {@code label-smoothing} (applied to each one-hot before mixing, as timm does),
 * {@code pairing} ({@code halves}, the default: sample i with i + N/2 mod N, the cheapest to mix; {@code flip}: sample i
 * with N-1-i like timm; {@code permute}: a seeded permutation) and
 * {@code stop-epoch} (from that epoch on, batches pass unmixed with smoothed targets: early-stopped mixup). All
 * randomness comes from the run's seeded {@code MixContext.random()}, so the same seed gives the same batches.
 */
public final class MixupTechniques implements TechniqueProvider {

    @Override
    public String spiVersion() {
        return KilnSpi.VERSION;
    }

    @Override
    public List<Technique<?>> techniques() {
        return List.of(mixup(), cutmix(), fmix(), resizemix(), mixupCutmix(), decoupled());
    }

    static Technique<Augmentation> mixup() {
        List<ParameterSpec> specs = new ArrayList<>();
        // 0.2: Zhang et al. report alpha in [0.1, 0.4] best on ImageNet-1k, with larger values underfitting; 0.2 is
        // the value of their ImageNet runs. CIFAR-size runs often prefer 1.0 (OpenMixup's table), so say so.
        specs.add(ParameterSpec.decimal("alpha", 0.2,
                "lambda ~ Beta(alpha, alpha); 0.2 as in the paper's ImageNet runs, try 1.0 on CIFAR").greaterThan(0));
        specs.add(mode());
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "mixup",
                "Convex combination of two samples and of their labels", specs,
                p -> new Mixup(p.getDouble("alpha"), mode(p), pairing(p), p.getDouble("label-smoothing"),
                        p.getInt("stop-epoch")))
                .withReference("Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018");
    }

    static Technique<Augmentation> cutmix() {
        List<ParameterSpec> specs = new ArrayList<>();
        specs.add(ParameterSpec.decimal("alpha", 1.0, "box area fraction 1 - lambda, lambda ~ Beta(alpha, alpha)")
                .greaterThan(0));
        specs.add(mode());
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "cutmix",
                "Pastes a box of the partner image; label share = exact pixel share", specs,
                p -> new CutMix(p.getDouble("alpha"), mode(p), pairing(p), p.getDouble("label-smoothing"),
                        p.getInt("stop-epoch")))
                .withReference("Yun et al., CutMix, ICCV 2019; box as timm rand_bbox with corrected lambda");
    }

    static Technique<Augmentation> fmix() {
        List<ParameterSpec> specs = new ArrayList<>();
        specs.add(ParameterSpec.decimal("alpha", 1.0, "mask mean lambda ~ Beta(alpha, alpha)").greaterThan(0));
        specs.add(ParameterSpec.decimal("decay-power", 3.0,
                "spectrum falls as 1/f^decay-power; larger gives smoother, blobbier masks").greaterThan(0));
        specs.add(mode());
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "fmix",
                "Mixes with binary masks thresholded from low-frequency Fourier noise", specs,
                p -> new FMix(p.getDouble("alpha"), p.getDouble("decay-power"), mode(p), pairing(p),
                        p.getDouble("label-smoothing"), p.getInt("stop-epoch")))
                .withReference("Harris et al., FMix: Enhancing Mixed Sample Data Augmentation, arXiv 2002.12047");
    }

    static Technique<Augmentation> resizemix() {
        List<ParameterSpec> specs = new ArrayList<>();
        specs.add(ParameterSpec.decimal("scale-min", 0.1, "smallest side ratio of the pasted, resized partner")
                .greaterThan(0).atMost(1));
        specs.add(ParameterSpec.decimal("scale-max", 0.8, "largest side ratio of the pasted, resized partner")
                .greaterThan(0).atMost(1));
        specs.add(ParameterSpec.choice("interpolation", "nearest", List.of("nearest", "bilinear"),
                "how the partner is shrunk: nearest (OpenMixup's default) or antialiased bilinear"));
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "resizemix",
                "Pastes the whole partner image, shrunk, at a random place", specs,
                p -> {
                    double min = p.getDouble("scale-min");
                    double max = p.getDouble("scale-max");
                    if (min > max) {
                        throw new KilnException("augmentation 'resizemix': scale-min " + min
                                + " must not exceed scale-max " + max);
                    }
                    return new ResizeMix(min, max, pairing(p), p.getString("interpolation").equals("bilinear"),
                            p.getDouble("label-smoothing"), p.getInt("stop-epoch"));
                })
                .withReference("Qin et al., ResizeMix: Mixing Data with Preserved Object Information, "
                        + "arXiv 2012.11101");
    }

    static Technique<Augmentation> mixupCutmix() {
        List<ParameterSpec> specs = new ArrayList<>();
        // 0.8 and 1.0: the DeiT/timm ImageNet recipe values for the pair.
        specs.add(ParameterSpec.decimal("mixup-alpha", 0.8, "mixup Beta(alpha, alpha); 0 turns mixup off")
                .atLeast(0));
        specs.add(ParameterSpec.decimal("cutmix-alpha", 1.0, "CutMix Beta(alpha, alpha); 0 turns CutMix off")
                .atLeast(0));
        specs.add(ParameterSpec.decimal("prob", 1.0, "probability that a batch (or sample) is mixed at all")
                .between(0, 1));
        specs.add(ParameterSpec.decimal("switch-prob", 0.5, "probability of CutMix rather than mixup when both are on")
                .between(0, 1));
        specs.add(mode());
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "mixup-cutmix",
                "timm-style mixup or CutMix, chosen at random per batch or per sample", specs,
                p -> {
                    double mixupAlpha = p.getDouble("mixup-alpha");
                    double cutmixAlpha = p.getDouble("cutmix-alpha");
                    if (mixupAlpha <= 0 && cutmixAlpha <= 0) {
                        throw new KilnException("augmentation 'mixup-cutmix': mixup-alpha and cutmix-alpha are both 0;"
                                + " at least one must be > 0");
                    }
                    return new MixupCutmix(mixupAlpha, cutmixAlpha, p.getDouble("prob"), p.getDouble("switch-prob"),
                            mode(p), pairing(p), p.getDouble("label-smoothing"), p.getInt("stop-epoch"));
                })
                .withReference("timm.data.Mixup (Wightman); DeiT recipe mixup 0.8 / cutmix 1.0");
    }

    static Technique<Augmentation> decoupled() {
        List<ParameterSpec> specs = new ArrayList<>();
        // 1.0: OpenMixup's CIFAR mixup baseline alpha; 0.1, both, power 1: its base decoupled config.
        specs.add(ParameterSpec.decimal("alpha", 1.0, "lambda ~ Beta(alpha, alpha), one per batch").greaterThan(0));
        specs.add(ParameterSpec.decimal("eta", 0.1, "weight of the decoupled regulariser").atLeast(0));
        specs.add(ParameterSpec.choice("eta-mode", "both", List.of("both", "less", "more"),
                "which mixed class gets the regulariser: both, the smaller share, or the larger"));
        specs.add(ParameterSpec.decimal("lambda-power", 1.0,
                "eta_i = eta * share_i^lambda-power; 0 gives every term the plain eta").atLeast(0));
        specs.addAll(common());
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, "decoupled",
                "mixup plus a decoupled-softmax regulariser on the mixed classes", specs,
                p -> new DecoupledMixup(p.getDouble("alpha"), p.getDouble("eta"), p.getString("eta-mode"),
                        p.getDouble("lambda-power"), pairing(p), p.getDouble("label-smoothing"),
                        p.getInt("stop-epoch")))
                .withReference("Liu et al., Harnessing Hard Mixed Samples with Decoupled Regularizer, NeurIPS 2023");
    }

    private static ParameterSpec mode() {
        return ParameterSpec.choice("mode", "batch", List.of("batch", "elem"),
                "one lambda (and box or mask) per batch, or one per sample");
    }

    private static List<ParameterSpec> common() {
        return List.of(
                ParameterSpec.decimal("label-smoothing", 0.0,
                        "epsilon: on = 1 - eps + eps/K, off = eps/K, applied before mixing").atLeast(0).lessThan(1),
                // halves by default: with a per-batch coefficient the blend is then one matrix product over the
                // batch instead of a flip and three element-wise passes; with a shuffling loader every fixed pairing
                // gives the same distribution of pairs.
                ParameterSpec.choice("pairing", "halves", List.of("halves", "flip", "permute"),
                        "partner of sample i: i + N/2 mod N (halves; the last sample of an odd batch keeps itself), "
                                + "N-1-i (flip, as timm) or a seeded random permutation"),
                ParameterSpec.integer("stop-epoch", -1L,
                        "from this epoch on the batch passes unmixed (early-stopped mixup); -1 never stops")
                        .atLeast(-1));
    }

    private static Mixing.Mode mode(Parameters p) {
        return Mixing.Mode.parse(p.getString("mode"));
    }

    private static Mixing.Pairing pairing(Parameters p) {
        return Mixing.Pairing.parse(p.getString("pairing"));
    }
}
