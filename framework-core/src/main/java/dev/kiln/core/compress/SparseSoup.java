package dev.kiln.core.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.nn.Parameter;
import ai.djl.training.ParameterStore;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.train.TrainingConfig;
import dev.kiln.core.train.TrainingResult;
import dev.kiln.core.train.TrainingRun;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Sparse model soups (Zimmer, Spiegel and Pokutta, ICLR 2024): prune a trained model by magnitude, fine-tune
 * {@code ingredients} copies that share the mask (different seeds, so different batch orders and augmentation
 * draws), average them, and repeat for {@code rounds} rounds, each pruning the previous soup a step further, until
 * round R reaches the target {@code sparsity}.
 *
 * <p>The mask is re-applied after every optimiser step through {@link TrainingRun#withStepHook}, so every
 * ingredient has exact zeros where the mask has them, and so does their average: the soup keeps exactly the mask's
 * sparsity. Per-tensor pruning uses the registry's {@code magnitude} compressor; global pruning ranks |w| across all
 * prunable tensors at once (one threshold for the whole model). Biases, norm weights and running statistics are never
 * pruned ({@link CompressPipeline#isCompressible}). Batch-norm running statistics are averaged like the weights; the
 * paper's BN recalibration pass is not done here.
 */
public final class SparseSoup {

    /**
     * @param sparsity the final fraction of prunable weights set to zero, in [0, 1)
     * @param global one magnitude threshold across all prunable tensors instead of one per tensor
     * @param ingredients fine-tuned copies averaged per round, at least 1
     * @param rounds prune-retrain-average rounds; round r prunes to {@code sparsity * r / rounds}
     * @param fineTune the fine-tuning run of one ingredient (its seed is replaced per ingredient)
     * @param ingredientAugmentations when not empty, ingredient i trains with entry {@code i mod size} in place of
     *     {@code fineTune}'s augmentations, so the ingredients differ in augmentation as well as in seed
     */
    public record Settings(double sparsity, boolean global, int ingredients, int rounds, TrainingConfig fineTune,
            List<List<Augmentation>> ingredientAugmentations) {

        /** Ingredients that differ in seed only. */
        public Settings(double sparsity, boolean global, int ingredients, int rounds, TrainingConfig fineTune) {
            this(sparsity, global, ingredients, rounds, fineTune, List.of());
        }

        public Settings {
            ingredientAugmentations = List.copyOf(ingredientAugmentations);
            if (!(sparsity >= 0 && sparsity < 1)) {
                throw new KilnException("sparse soup: sparsity " + sparsity + " must be in [0, 1)");
            }
            if (ingredients < 1) {
                throw new KilnException("sparse soup: ingredients " + ingredients + " must be at least 1");
            }
            if (rounds < 1) {
                throw new KilnException("sparse soup: rounds " + rounds + " must be at least 1");
            }
            if (fineTune.checkpointDir() != null || fineTune.resume()) {
                throw new KilnException("sparse soup: the fine-tuning config must have no checkpointDir and no"
                        + " resume; each ingredient is a fresh short run");
            }
        }
    }

    /** One round's outcome: the sparsity reached and the test accuracy of each ingredient and of the soup. */
    public record Round(double sparsity, List<Double> ingredientAccuracies, double soupAccuracy) {
    }

    /**
     * The final soup's parameters (owned by the manager given to {@link #run}), its masks (1 kept, 0 pruned, for
     * the pruned tensors only) and the rounds.
     */
    public record Result(Map<String, NDArray> parameters, Map<String, NDArray> masks, List<Round> rounds) {
    }

    private final Registry registry;
    private final Settings settings;

    public SparseSoup(Registry registry, Settings settings) {
        this.registry = registry;
        this.settings = settings;
    }

    /** Told when an ingredient has been fine-tuned (rounds and ingredients count from 1). */
    @FunctionalInterface
    public interface Listener {
        void onIngredient(int round, int ingredient, double accuracy);

        /** The fine-tuned ingredient itself, before it joins the average (e.g. to score it on other data). */
        default void onIngredientModel(int round, int ingredient, KilnModel model) {
        }
    }

    /**
     * Runs all rounds from {@code start} (every parameter of the model by stable name, e.g. from
     * {@link CompressedCheckpoints#load}); evaluates on {@code eval} when it is not null.
     */
    public Result run(Map<String, NDArray> start, ImageDataset train, ImageDataset eval, NDManager manager) {
        return run(start, train, eval, manager, (round, ingredient, accuracy) -> {
        });
    }

    /** {@link #run(Map, ImageDataset, ImageDataset, NDManager)}, telling {@code listener} after each ingredient. */
    public Result run(Map<String, NDArray> start, ImageDataset train, ImageDataset eval, NDManager manager,
            Listener listener) {
        Map<String, NDArray> soup = copy(start, manager);
        Map<String, NDArray> masks = new LinkedHashMap<>();
        List<Round> rounds = new ArrayList<>();
        for (int r = 1; r <= settings.rounds(); r++) {
            double sparsity = settings.sparsity() * r / settings.rounds();
            masks.values().forEach(NDArray::close);
            masks = masks(soup, sparsity, manager);
            applyMasks(soup, masks);
            Map<String, NDArray> sum = new LinkedHashMap<>();
            List<Double> accuracies = new ArrayList<>();
            for (int i = 0; i < settings.ingredients(); i++) {
                long seed = settings.fineTune().seed() + 1000L * r + i;
                TrainingConfig.Builder builder = settings.fineTune().toBuilder().seed(seed);
                if (!settings.ingredientAugmentations().isEmpty()) {
                    builder.augmentations(settings.ingredientAugmentations().get(
                            i % settings.ingredientAugmentations().size()));
                }
                TrainingConfig config = builder.build();
                try (NDManager scope = manager.newSubManager()) {
                    Map<String, NDArray> roundMasks = masks;
                    TrainingResult result = new TrainingRun(config, train, eval, null).startingFrom(soup)
                            .withStepHook((params, step) -> applyMaskToParameters(params, roundMasks))
                            .run(scope);
                    accuracies.add(result.finalAccuracy());
                    listener.onIngredient(r, i + 1, result.finalAccuracy());
                    listener.onIngredientModel(r, i + 1, result.model());
                    for (Map.Entry<String, Parameter> e : result.model().parameters().entrySet()) {
                        NDArray value = e.getValue().getArray().toType(DataType.FLOAT64, true);
                        NDArray previous = sum.get(e.getKey());
                        NDArray total = previous == null ? value : previous.add(value);
                        total.attach(manager);
                        if (previous != null) {
                            previous.close();
                        }
                        sum.put(e.getKey(), total);
                    }
                }
            }
            Map<String, NDArray> next = new LinkedHashMap<>();
            for (Map.Entry<String, NDArray> e : sum.entrySet()) {
                NDArray original = soup.get(e.getKey());
                // Averaged in float64, then back to the parameter's type; 0/k stays exactly 0.
                NDArray mean = e.getValue().div(settings.ingredients()).toType(original.getDataType(), false);
                mean.attach(manager);
                next.put(e.getKey(), mean);
                e.getValue().close();
            }
            soup.values().forEach(NDArray::close);
            soup = next;
            double soupAccuracy = eval == null ? Double.NaN : accuracy(soup, train, eval, manager);
            rounds.add(new Round(sparsity, accuracies, soupAccuracy));
        }
        return new Result(soup, masks, rounds);
    }

    /** Keep-masks (float 1/0) for every prunable tensor at the given sparsity. */
    Map<String, NDArray> masks(Map<String, NDArray> params, double sparsity, NDManager manager) {
        Map<String, NDArray> masks = new LinkedHashMap<>();
        List<String> prunable = new ArrayList<>();
        params.forEach((name, array) -> {
            if (array.getDataType().isFloating() && CompressPipeline.isCompressible(name, array.getShape())) {
                prunable.add(name);
            }
        });
        if (prunable.isEmpty()) {
            throw new KilnException("sparse soup: the model has no prunable weight tensors");
        }
        if (settings.global()) {
            try (NDManager scope = manager.newSubManager()) {
                List<NDArray> flat = new ArrayList<>();
                for (String name : prunable) {
                    flat.add(params.get(name).abs().reshape(-1));
                }
                NDArray all = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(flat));
                all.attach(scope);
                long keep = Math.round((1 - sparsity) * all.size());
                for (String name : prunable) {
                    NDArray abs = params.get(name).abs();
                    NDArray mask;
                    if (keep >= all.size()) {
                        mask = abs.gte(0f);
                    } else if (keep == 0) {
                        mask = abs.lt(0f);
                    } else {
                        // One threshold for the whole model: the keep-th largest |w| over all prunable tensors.
                        NDArray kth = all.topK((int) keep, 0, true, false).get(0).min();
                        mask = abs.gte(kth);
                    }
                    NDArray m = mask.toType(DataType.FLOAT32, false);
                    m.attach(manager);
                    masks.put(name, m);
                }
            }
        } else {
            Compressor magnitude = registry.create(Kind.COMPRESS, Compressor.class, "magnitude",
                    Map.of("sparsity", Double.toString(sparsity)));
            for (String name : prunable) {
                try (NDManager scope = manager.newSubManager()) {
                    NDArray w = params.get(name).duplicate();
                    w.attach(scope);
                    CompressedTensor pruned = magnitude.compress(name, w);
                    // Kept = not pruned; a weight that was exactly zero already counts as pruned.
                    NDArray m = pruned.reconstruction().neq(0f).toType(DataType.FLOAT32, false);
                    m.attach(manager);
                    masks.put(name, m);
                }
            }
        }
        return masks;
    }

    private static void applyMasks(Map<String, NDArray> params, Map<String, NDArray> masks) {
        masks.forEach((name, mask) -> params.get(name).muli(mask.toType(params.get(name).getDataType(), false)));
    }

    private static void applyMaskToParameters(Map<String, Parameter> params, Map<String, NDArray> masks) {
        masks.forEach((name, mask) -> {
            NDArray p = params.get(name).getArray();
            p.muli(mask.toDevice(p.getDevice(), false));
        });
    }

    private double accuracy(Map<String, NDArray> params, ImageDataset train, ImageDataset eval, NDManager manager) {
        try (NDManager scope = manager.newSubManager()) {
            TrainingConfig c = settings.fineTune();
            KilnModel model = ModelZoo.build(c.model(), c.modelParameters(), train.sampleShape(), train.numClasses())
                    .initialize(scope, 0);
            model.loadParameters(params);
            ImageDataset ready = eval;
            if (c.normalize() && eval.normalization() == null) {
                ready = eval.normalized(train.normalization() != null ? train.normalization()
                        : train.computeNormalization());
            }
            return TrainingRun.evaluate(model, ready, scope, new ParameterStore(scope, false), c.batchSize())[1];
        }
    }

    private static Map<String, NDArray> copy(Map<String, NDArray> params, NDManager manager) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        params.forEach((name, array) -> {
            NDArray c = array.duplicate();
            c.attach(manager);
            out.put(name, c);
        });
        return out;
    }
}
