package dev.kiln.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.SimpleTechnique;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.SkipPolicy;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;

/** The kit catches deliberately broken techniques with a message saying what is wrong, and passes good ones. */
class TestKitTest {

    /** Plain mixup with a flip pairing; {@code lambda} drawn by inverse transform so tiny alpha gives exactly 1. */
    static class GoodMixup implements Augmentation {
        final double alpha;

        GoodMixup(double alpha) {
            this.alpha = alpha;
        }

        double lambda(MixContext context) {
            double u = context.random().nextDouble();
            // u^(1/alpha) is a Beta(alpha, 1) draw: tiny alpha underflows it to 0, giving lambda = 1 exactly.
            return 1 - Math.pow(u, 1 / alpha);
        }

        @Override
        public MixedBatch mix(Batch batch, MixContext context) {
            double lambda = lambda(context);
            NDArray x = batch.inputs();
            NDArray y = batch.softTargets();
            NDArray partnerX = x.flip(0);
            NDArray partnerY = y.flip(0);
            NDArray mixed = x.mul((float) lambda).add(partnerX.mul((float) (1 - lambda)));
            NDArray targets = y.mul((float) lambda).add(partnerY.mul((float) (1 - lambda)));
            return new MixedBatch(mixed, targets);
        }
    }

    static Technique<Augmentation> augmentation(String id, Function<Double, Augmentation> factory) {
        return SimpleTechnique.<Augmentation>of(Kind.AUGMENT, id, "test augmentation",
                List.of(ParameterSpec.decimal("alpha", 1.0, "Beta(alpha, 1) shape").greaterThan(0)),
                p -> factory.apply(p.getDouble("alpha")));
    }

    static Technique<MergeMethod> merge(String id, MergeMethod method) {
        return SimpleTechnique.<MergeMethod>of(Kind.MERGE, id, "test merge",
                List.of(ParameterSpec.decimal("lambda", 1.0, "scale").between(-10, 10),
                        ParameterSpec.choice("mode", "a", List.of("a", "b"), "mode")), p -> method);
    }

    /** Task arithmetic averaged over the models: base + mean(m_i - base). */
    static class MeanTaskVectors implements MergeMethod {
        @Override
        public NDArray merge(MergeInput input) {
            if (input.base() == null) {
                throw new KilnException("merge method 'mean-tv' needs a base for tensor '" + input.tensorName() + "'");
            }
            NDArray sum = input.base().zerosLike();
            for (ModelTensor model : input.models()) {
                sum = sum.add(model.tensor().sub(input.base()));
            }
            return input.base().add(sum.div(input.models().size()));
        }

        @Override
        public boolean requiresBase() {
            return true;
        }
    }

    private static String failure(Technique<?> technique) {
        AssertionFailedError error = assertThrows(AssertionFailedError.class, () -> TechniqueContract.check(technique));
        return error.getMessage();
    }

    @Test
    void wellBehavedAugmentationPasses() {
        ContractReport report = TechniqueContract.check(augmentation("good-mixup", GoodMixup::new));
        assertTrue(report.passed(), report.toString());
    }

    @Test
    void wrongShapeIsCaught() {
        String message = failure(augmentation("cropper", alpha -> (batch, context) -> {
            MixedBatch good = new GoodMixup(alpha).mix(batch, context);
            return new MixedBatch(good.inputs().get(":, :, 1:, :"), good.targets());
        }));
        assertTrue(message.contains("augmentation 'cropper': mixed inputs have shape (5, 3, 7, 10), expected "
                + "(5, 3, 8, 10)"), message);
    }

    @Test
    void unseededRandomnessIsCaught() {
        Random unseeded = new Random();
        String message = failure(augmentation("unseeded", alpha -> (batch, context) -> new GoodMixup(alpha).mix(batch,
                new MixContext(unseeded, context.epoch(), context.totalEpochs(), context.step()))));
        assertTrue(message.contains("augmentation 'unseeded': not deterministic: the same MixContext seed gave "
                + "different inputs"), message);
    }

    @Test
    void nanAtLambdaOneIsCaughtByTheTinyAlphaRun() {
        String message = failure(augmentation("divider", alpha -> new GoodMixup(alpha) {
            @Override
            public MixedBatch mix(Batch batch, MixContext context) {
                double lambda = lambda(context);
                // The bug: normalising by (1 - lambda), which is 0 whenever lambda is drawn as exactly 1.
                NDArray x = batch.inputs().mul((float) lambda).add(batch.inputs().flip(0).mul((float) (1 - lambda)))
                        .div((float) (1 - lambda)).mul((float) (1 - lambda));
                NDArray y = batch.softTargets();
                return new MixedBatch(x, y.mul((float) lambda).add(y.flip(0).mul((float) (1 - lambda))));
            }
        }));
        assertTrue(message.contains("augmentation 'divider': mixed inputs contain NaN"), message);
        assertTrue(message.contains("with alpha = 0.001"), message);
        // Default alpha never draws lambda = 1 exactly, so only the extreme-alpha run finds it.
        assertTrue(message.lines().allMatch(l -> !l.contains("NaN") || l.contains("alpha = 0.001")), message);
    }

    @Test
    void targetsNotSummingToOneAreCaught() {
        String message = failure(augmentation("half", alpha -> (batch, context) -> {
            MixedBatch good = new GoodMixup(alpha).mix(batch, context);
            return new MixedBatch(good.inputs(), good.targets().mul(0.5f));
        }));
        assertTrue(message.contains("augmentation 'half': targets row 0 sums to 0.5"), message);
        assertTrue(message.contains("expected 1 on batch (1, 1, 8, 8) with int labels"), message);
    }

    @Test
    void augmentationThatModifiesItsInputIsCaught() {
        String message = failure(augmentation("in-place", alpha -> (batch, context) -> {
            MixedBatch good = new GoodMixup(alpha).mix(batch, context);
            batch.inputs().muli(2f);
            return good;
        }));
        assertTrue(message.contains("augmentation 'in-place': mix modified the batch's input array"), message);
    }

    @Test
    void wellBehavedMergePasses() {
        ContractReport report = TechniqueContract.check(merge("mean-tv", new MeanTaskVectors()));
        assertTrue(report.passed(), report.toString());
    }

    @Test
    void mergeThatMutatesItsInputIsCaught() {
        String message = failure(merge("mutator", new MeanTaskVectors() {
            @Override
            public NDArray merge(MergeInput input) {
                NDArray out = super.merge(input);
                input.models().get(0).tensor().subi(1f);
                return out;
            }
        }));
        assertTrue(message.contains("merge method 'mutator': merge modified the tensor of model 0 (1 model, with base)"),
                message);
    }

    @Test
    void mergeWithoutBaseCheckIsCaughtAndIdenticalModelsCanBeSkipped() {
        // Sums task vectors without looking for the base: N identical models give base + N * tv, and a missing
        // base ends in a NullPointerException rather than a KilnException.
        MergeMethod summing = new MergeMethod() {
            @Override
            public NDArray merge(MergeInput input) {
                NDArray out = input.base().duplicate();
                for (ModelTensor model : input.models()) {
                    out = out.add(model.tensor().sub(input.base()));
                }
                return out;
            }

            @Override
            public boolean requiresBase() {
                return true;
            }
        };
        String message = failure(merge("summing", summing));
        assertTrue(message.contains("merge method 'summing': merging 3 models, identical gave"), message);
        assertTrue(message.contains("merging 3 models without the required base threw NullPointerException"),
                message);
        assertTrue(message.contains("instead of a KilnException"), message);
        ContractReport skipped = TechniqueContract.forTechnique(merge("summing", summing))
                .skip(TechniqueContract.IDENTICAL_MODELS).run();
        assertEquals(2, skipped.violations().size(), skipped.toString());
        assertTrue(skipped.violations().stream().allMatch(v -> v.contains("without the required base")),
                skipped.toString());
    }

    @Test
    void parametersThatAcceptInvalidValuesAreCaught() {
        // A technique overriding parameters() with a spec that has no range but whose id is malformed.
        Technique<MergeMethod> bad = new Technique<>() {
            @Override
            public String id() {
                return "Bad_Id";
            }

            @Override
            public Kind kind() {
                return Kind.MERGE;
            }

            @Override
            public List<ParameterSpec> parameters() {
                return List.of(ParameterSpec.decimal("t", 0.5, ""), ParameterSpec.decimal("t", 0.5, "twice"));
            }

            @Override
            public MergeMethod create(dev.kiln.spi.Parameters parameters) {
                return new MeanTaskVectors();
            }
        };
        String message = failure(bad);
        assertTrue(message.contains("merge method 'Bad_Id': id 'Bad_Id' does not match"), message);
        assertTrue(message.contains("parameter 't' is declared twice"), message);
        assertTrue(message.contains("parameter 't' has no doc"), message);
    }

    @Test
    void invalidParameterValuesAreProbedJustOutsideTheBounds() {
        ParameterSpec spec = ParameterSpec.decimal("density", 1.0, "d").greaterThan(0).atMost(1);
        assertEquals(List.of("0.0", Double.toString(Math.nextUp(1.0))), ParameterChecks.badValues(spec));
        ParameterSpec count = ParameterSpec.integer("n", 2L, "n").atLeast(1);
        assertEquals(List.of("0"), ParameterChecks.badValues(count));
        assertEquals(List.of(), ParameterChecks.badValues(ParameterSpec.integer("seed", 0L, "s")));
    }

    @Test
    void compressorChecksCatchNanOnZeroWeights() {
        // Per-tensor max-abs normalisation without guarding the all-zero tensor: 0 / 0.
        Compressor naive = (name, weight) -> {
            NDArray scale = weight.abs().max();
            NDArray normalized = weight.div(scale).toType(DataType.FLOAT16, false);
            NDArray reconstruction = normalized.toType(DataType.FLOAT32, false).mul(scale);
            return new CompressedTensor(Map.of(".half", normalized, ".scale", scale), reconstruction, Map.of());
        };
        Technique<Compressor> technique = SimpleTechnique.<Compressor>of(Kind.COMPRESS, "naive-int8", "test", List.of(),
                p -> naive);
        String message = failure(technique);
        assertTrue(message.contains("compressor 'naive-int8': reconstruction contain"), message);
        assertTrue(message.contains("(all-zero weight)"), message);
        assertTrue(message.contains("stored tensor '.half' contain"), message);
        assertTrue(message.lines().skip(1).allMatch(l -> l.contains("(all-zero weight)")), message);
    }

    @Test
    void skipPolicyWithMovingFixedSetIsCaught() {
        SkipPolicy moving = new SkipPolicy() {
            @Override
            public KvCacheRule kvCacheRule() {
                return KvCacheRule.FIXED_LAYER_SET;
            }

            @Override
            public dev.kiln.spi.skip.SkipSession begin(dev.kiln.spi.skip.ModelLayout layout,
                    dev.kiln.spi.skip.Phase phase, int position, java.util.random.RandomGenerator random) {
                return layer -> layer != position % layout.layers();
            }
        };
        Technique<SkipPolicy> technique = SimpleTechnique.<SkipPolicy>of(Kind.SKIP, "moving", "test", List.of(),
                p -> moving);
        String message = failure(technique);
        assertTrue(message.contains("skip policy 'moving': kvCacheRule is FIXED_LAYER_SET but DECODE at position 1"),
                message);
        SkipPolicy fixed = new SkipPolicy() {
            @Override
            public KvCacheRule kvCacheRule() {
                return KvCacheRule.FIXED_LAYER_SET;
            }

            @Override
            public dev.kiln.spi.skip.SkipSession begin(dev.kiln.spi.skip.ModelLayout layout,
                    dev.kiln.spi.skip.Phase phase, int position, java.util.random.RandomGenerator random) {
                return layer -> layer % 2 == 0;
            }
        };
        TechniqueContract.check(SimpleTechnique.<SkipPolicy>of(Kind.SKIP, "even", "test", List.of(), p -> fixed));
    }

    @Test
    void providerChecksVersionAndDuplicateIds() {
        TechniqueProvider provider = new TechniqueProvider() {
            @Override
            public String spiVersion() {
                return "2.0";
            }

            @Override
            public List<Technique<?>> techniques() {
                return List.of(merge("same", new MeanTaskVectors()), merge("same", new MeanTaskVectors()));
            }
        };
        String message = assertThrows(AssertionFailedError.class, () -> TechniqueContract.checkProvider(provider))
                .getMessage();
        assertTrue(message.contains("spiVersion() is '2.0', not compatible with Kiln SPI " + KilnSpi.VERSION), message);
        assertTrue(message.contains("declares merge method 'same' more than once"), message);
    }

    @Test
    void unknownSkipNameFailsAtOnce() {
        assertThrows(IllegalArgumentException.class,
                () -> TechniqueContract.forTechnique(merge("x", new MeanTaskVectors())).skip("identical-model"));
    }

    @Test
    void shapeConstantsMatchTheBrief() {
        assertEquals(new Shape(6, 7), MergeChecks.SHAPE);
        assertEquals(new Shape(16, 32), CompressChecks.SHAPE);
    }
}
