package dev.kiln.core.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.Block;
import ai.djl.nn.Blocks;
import ai.djl.nn.ParallelBlock;
import ai.djl.nn.SequentialBlock;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.BatchNorm;
import ai.djl.nn.pooling.Pool;
import ai.djl.util.Pair;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Parameters;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The built-in models, selected by id with typed, validated parameters:
 * <ul>
 *   <li>{@code mlp}: flatten, then Linear-ReLU per hidden size, then a linear head;</li>
 *   <li>{@code cnn}: (conv-batchnorm-ReLU-maxpool) x 2, an optional hidden Linear-ReLU, a linear head: the usual
 *   2-conv Fashion-MNIST network (about 91-92% test accuracy on the full set);</li>
 *   <li>{@code resnet}: a small pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual
 *   Networks") with three stages of width w, 2w, 4w for 28x28 or 32x32 inputs.</li>
 * </ul>
 */
public final class ModelZoo {
    private static final Map<String, Entry> ENTRIES = new LinkedHashMap<>();

    static {
        add(new Entry("mlp", "Multi-layer perceptron on flattened inputs",
                List.of(ParameterSpec.text("hidden", "256,128",
                        "comma-separated hidden layer sizes, e.g. 256,128 (empty for a linear model)")),
                ModelZoo::mlp));
        add(new Entry("cnn", "Two conv-bn-relu-maxpool stages and a linear head",
                List.of(ParameterSpec.integer("width", 32L, "filters of the first conv; the second has twice as many")
                                .between(1, 1024),
                        ParameterSpec.integer("kernel", 5L, "conv kernel size (odd; padding keeps the size)")
                                .between(1, 11),
                        ParameterSpec.integer("hidden", 128L, "units of the hidden Linear-ReLU before the head;"
                                + " 0 for none").between(0, 65536),
                        ParameterSpec.flag("batch-norm", true, "batch normalisation after each conv")),
                ModelZoo::cnn));
        add(new Entry("resnet", "Small pre-activation ResNet: three stages of width w, 2w, 4w",
                List.of(ParameterSpec.integer("width", 16L, "channels of the first stage").between(1, 512),
                        ParameterSpec.integer("blocks", 1L, "residual blocks per stage").between(1, 16)),
                ModelZoo::resnet));
    }

    private ModelZoo() {
    }

    private static void add(Entry entry) {
        ENTRIES.put(entry.id(), entry);
    }

    /** The ids of all models. */
    public static List<String> ids() {
        return List.copyOf(ENTRIES.keySet());
    }

    /** The parameters a model takes, for docs and the {@code list} goal. */
    public static List<ParameterSpec> parameters(String id) {
        return entry(id).parameters();
    }

    /** One-line description of a model. */
    public static String summary(String id) {
        return entry(id).summary();
    }

    /**
     * Builds (but does not initialise) a model.
     *
     * @param id {@code mlp}, {@code cnn} or {@code resnet}
     * @param rawParameters parameter values as written in a pom; unknown names and bad values fail here
     * @param sampleShape one input sample, (C, H, W)
     * @param numClasses number of outputs
     */
    public static KilnModel build(String id, Map<String, String> rawParameters, Shape sampleShape, int numClasses) {
        return build(id, rawParameters, sampleShape, numClasses, Map.of());
    }

    /**
     * Builds (but does not initialise) a model whose named Linear layers are {@linkplain FactoredLinear factored}:
     * each entry of {@code factoredRanks} maps a Linear layer's stable name ({@code fc1}, {@code head}, {@code fc})
     * to the rank of its {@code weight.u} [out, r] x {@code weight.v} [r, in] product, which replaces its
     * {@code weight}.
     *
     * @throws KilnException when a name is not a Linear layer of this model or a rank is below 1
     */
    public static KilnModel build(String id, Map<String, String> rawParameters, Shape sampleShape, int numClasses,
            Map<String, Integer> factoredRanks) {
        return build(id, rawParameters, sampleShape, numClasses, factoredRanks, Map.of());
    }

    /**
     * Builds (but does not initialise) a model with factored Linear layers (see above) and with some
     * {@linkplain #shrinkable shrinkable} layers narrower than the parameters say: each entry of {@code widths} maps
     * such a layer to its number of outputs (units of a Linear, filters of a conv). The layers after it take their
     * input size from it (DJL infers input sizes), so the whole model is genuinely smaller.
     *
     * @throws KilnException when a name is not a Linear layer / shrinkable layer of this model, a rank is below 1,
     *     or a width is below 1 or above the layer's full width
     */
    public static KilnModel build(String id, Map<String, String> rawParameters, Shape sampleShape, int numClasses,
            Map<String, Integer> factoredRanks, Map<String, Integer> widths) {
        Entry entry = entry(id);
        if (sampleShape.dimension() != 3) {
            throw new KilnException("model '" + id + "' needs samples of shape (C, H, W), got " + sampleShape);
        }
        if (numClasses < 2) {
            throw new KilnException("model '" + id + "' needs at least 2 classes, got " + numClasses);
        }
        Parameters parameters = bind(entry, rawParameters);
        for (Map.Entry<String, Integer> e : factoredRanks.entrySet()) {
            if (e.getValue() == null || e.getValue() < 1) {
                throw new KilnException("model '" + id + "': Linear layer '" + e.getKey() + "' cannot be factored"
                        + " with rank " + e.getValue() + "; the rank must be at least 1");
            }
        }
        Layers layers = new Layers(factoredRanks, widths);
        Block block = entry.factory().build(parameters, sampleShape, numClasses, layers);
        Set<String> unknown = new TreeSet<>(factoredRanks.keySet());
        unknown.removeAll(layers.linearNames);
        if (!unknown.isEmpty()) {
            throw new KilnException("model '" + id + "' has no Linear layer " + String.join(", ", unknown)
                    + " to factor; its Linear layers are " + String.join(", ", layers.linearNames));
        }
        Set<String> notShrinkable = new TreeSet<>(widths.keySet());
        layers.shrinkable.forEach(s -> notShrinkable.remove(s.layer()));
        if (!notShrinkable.isEmpty()) {
            throw new KilnException("model '" + id + "' cannot narrow layer " + String.join(", ", notShrinkable)
                    + "; the layers whose outputs can be removed are " + (layers.shrinkable.isEmpty() ? "none"
                    : String.join(", ", layers.shrinkable.stream().map(Shrinkable::layer).toList()))
                    + " (the classifier head keeps every class, and resnet's residual sums fix the width of the stem,"
                    + " each block's second conv and shortcut)");
        }
        return new KilnModel(id, parameters, block, layers.named, sampleShape, numClasses);
    }

    /**
     * A layer whose output rows (Linear units or conv filters) can be removed to make the model smaller, and what
     * else must shrink with it.
     *
     * @param layer the layer's stable name, e.g. {@code conv1}
     * @param width its full number of outputs
     * @param norms batch-norm layers between it and its consumer, whose channels are the layer's outputs
     * @param consumer the one layer that reads its outputs, whose input columns (dimension 1 of its weight) must be
     *     sliced to match; after a flatten each output channel owns a contiguous block of input columns
     */
    public record Shrinkable(String layer, int width, List<String> norms, String consumer) {
    }

    /**
     * The layers of this model whose outputs can be removed, in definition order: {@code mlp} hidden layers;
     * {@code cnn} convs (with their batch norm) and hidden Linear; {@code resnet} only each residual block's first
     * conv, since the residual sums need the stem, the second convs and the shortcuts to agree on one channel set.
     * The classifier head never loses outputs.
     */
    public static List<Shrinkable> shrinkable(String id, Map<String, String> rawParameters, Shape sampleShape,
            int numClasses) {
        Entry entry = entry(id);
        Layers layers = new Layers(Map.of(), Map.of());
        entry.factory().build(bind(entry, rawParameters), sampleShape, numClasses, layers);
        return List.copyOf(layers.shrinkable);
    }

    private static Entry entry(String id) {
        Entry entry = ENTRIES.get(id);
        if (entry == null) {
            throw new KilnException("unknown model '" + id + "'; known models: " + String.join(", ", ENTRIES.keySet()));
        }
        return entry;
    }

    /** The SPI's parameter validation, worded for a model. */
    private static Parameters bind(Entry entry, Map<String, String> raw) {
        return Parameters.bind("model '" + entry.id() + "'", entry.id(), entry.parameters(), raw);
    }

    @FunctionalInterface
    private interface Factory {
        Block build(Parameters p, Shape sample, int classes, Layers named);
    }

    /** The stable names a factory registers, which Linear layers are factored and which layers are narrowed. */
    private static final class Layers {
        private final List<Pair<String, Block>> named = new ArrayList<>();
        private final Map<String, Integer> factoredRanks;
        private final Map<String, Integer> widths;
        private final List<String> linearNames = new ArrayList<>();
        private final List<Shrinkable> shrinkable = new ArrayList<>();

        Layers(Map<String, Integer> factoredRanks, Map<String, Integer> widths) {
            this.factoredRanks = factoredRanks;
            this.widths = widths;
        }

        /** A dense Linear with bias, or its factored form when the caller asked for one under this name. */
        Block linear(String name, int units) {
            linearNames.add(name);
            Integer rank = factoredRanks.get(name);
            int width = width(name, units);
            Block block = rank == null ? Linear.builder().setUnits(width).build() : new FactoredLinear(rank, width);
            return named(this, name, block);
        }

        /**
         * The outputs a layer gets: {@code full}, or the narrower width asked for. Only layers declared through
         * {@link #shrinks} may be narrowed; the check that no other name was asked for runs after the build.
         */
        int width(String name, int full) {
            Integer w = widths.get(name);
            if (w == null) {
                return full;
            }
            if (w < 1 || w > full) {
                throw new KilnException("layer '" + name + "' cannot have " + w + " outputs; it has " + full
                        + " at full width, and a narrowed layer keeps between 1 and " + full);
            }
            return w;
        }

        /** Declares that {@code layer}'s outputs may be removed, with the norms and the consumer that follow it. */
        void shrinks(String layer, int full, List<String> norms, String consumer) {
            shrinkable.add(new Shrinkable(layer, full, List.copyOf(norms), consumer));
        }
    }

    private record Entry(String id, String summary, List<ParameterSpec> parameters, Factory factory) {
    }

    /** Registers a parameterised block under a stable name and returns it. */
    private static <B extends Block> B named(Layers layers, String name, B block) {
        layers.named.add(new Pair<>(name, block));
        return block;
    }

    private static Block mlp(Parameters p, Shape sample, int classes, Layers named) {
        String text = p.getString("hidden").trim();
        List<Integer> sizes = new ArrayList<>();
        if (!text.isEmpty()) {
            for (String part : text.split(",")) {
                int size;
                try {
                    size = Integer.parseInt(part.trim());
                } catch (NumberFormatException e) {
                    size = -1;
                }
                if (size < 1 || size > 1 << 20) {
                    throw new KilnException("parameter 'hidden' of model 'mlp': '" + part.trim()
                            + "' is not a layer size (a positive integer); write sizes like 256,128");
                }
                sizes.add(size);
            }
        }
        SequentialBlock net = new SequentialBlock().add(Blocks.batchFlattenBlock());
        for (int i = 0; i < sizes.size(); i++) {
            net.add(named.linear("fc" + (i + 1), sizes.get(i)));
            net.add(Activation.reluBlock());
            named.shrinks("fc" + (i + 1), sizes.get(i), List.of(), i + 1 < sizes.size() ? "fc" + (i + 2) : "head");
        }
        net.add(named.linear("head", classes));
        return net;
    }

    private static Block cnn(Parameters p, Shape sample, int classes, Layers named) {
        int width = p.getInt("width");
        int kernel = p.getInt("kernel");
        if (kernel % 2 == 0) {
            throw new KilnException("parameter 'kernel' of model 'cnn': " + kernel + " is even; use an odd size so"
                    + " padding keeps the image size");
        }
        if (sample.get(1) < 4 || sample.get(2) < 4) {
            throw new KilnException("model 'cnn' needs images of at least 4x4, got " + sample);
        }
        boolean batchNorm = p.getBoolean("batch-norm");
        SequentialBlock net = new SequentialBlock();
        int hidden = p.getInt("hidden");
        for (int stage = 1; stage <= 2; stage++) {
            int filters = named.width("conv" + stage, width * stage);
            named.shrinks("conv" + stage, width * stage, batchNorm ? List.of("bn" + stage) : List.of(),
                    stage == 1 ? "conv2" : hidden > 0 ? "fc1" : "fc");
            net.add(named(named, "conv" + stage, Conv2d.builder().setKernelShape(new Shape(kernel, kernel))
                    .optPadding(new Shape(kernel / 2, kernel / 2)).setFilters(filters).optBias(!batchNorm).build()));
            if (batchNorm) {
                net.add(named(named, "bn" + stage, BatchNorm.builder().build()));
            }
            net.add(Activation.reluBlock());
            net.add(Pool.maxPool2dBlock(new Shape(2, 2), new Shape(2, 2)));
        }
        net.add(Blocks.batchFlattenBlock());
        if (hidden > 0) {
            net.add(named.linear("fc1", hidden));
            net.add(Activation.reluBlock());
            named.shrinks("fc1", hidden, List.of(), "fc");
        }
        net.add(named.linear("fc", classes));
        return net;
    }

    private static Block resnet(Parameters p, Shape sample, int classes, Layers named) {
        int width = p.getInt("width");
        int blocks = p.getInt("blocks");
        if (sample.get(1) < 8 || sample.get(2) < 8) {
            throw new KilnException("model 'resnet' needs images of at least 8x8, got " + sample);
        }
        SequentialBlock net = new SequentialBlock();
        net.add(named(named, "stem", conv(width, 3, 1)));
        int in = width;
        for (int stage = 1; stage <= 3; stage++) {
            int out = width << (stage - 1);
            for (int b = 1; b <= blocks; b++) {
                int stride = stage > 1 && b == 1 ? 2 : 1;
                net.add(residual(named, "stage" + stage + ".block" + b, in, out, stride));
                in = out;
            }
        }
        // Pre-activation blocks end on a conv, so the head normalises and activates once more.
        net.add(named(named, "bn", BatchNorm.builder().build()));
        net.add(Activation.reluBlock());
        net.add(Pool.globalAvgPool2dBlock());
        net.add(Blocks.batchFlattenBlock());
        net.add(named.linear("fc", classes));
        return net;
    }

    private static Conv2d conv(int filters, int kernel, int stride) {
        return Conv2d.builder().setKernelShape(new Shape(kernel, kernel)).optPadding(new Shape(kernel / 2,
                kernel / 2)).optStride(new Shape(stride, stride)).setFilters(filters).optBias(false).build();
    }

    /** BN-ReLU-conv-BN-ReLU-conv plus a shortcut: identity, or a strided 1x1 conv when the shape changes. */
    private static Block residual(Layers named, String name, int in, int out, int stride) {
        // conv1's outputs only feed bn2 and conv2 inside the block, so they may be removed; everything on the
        // residual path (conv2, shortcut, the stem) must keep the channel set the sums add up.
        named.shrinks(name + ".conv1", out, List.of(name + ".bn2"), name + ".conv2");
        SequentialBlock main = new SequentialBlock()
                .add(named(named, name + ".bn1", BatchNorm.builder().build()))
                .add(Activation.reluBlock())
                .add(named(named, name + ".conv1", conv(named.width(name + ".conv1", out), 3, stride)))
                .add(named(named, name + ".bn2", BatchNorm.builder().build()))
                .add(Activation.reluBlock())
                .add(named(named, name + ".conv2", conv(out, 3, 1)));
        Block shortcut = in == out && stride == 1 ? Blocks.identityBlock()
                : named(named, name + ".shortcut", conv(out, 1, stride));
        return new ParallelBlock(ModelZoo::sum, List.of(main, shortcut));
    }

    private static NDList sum(List<NDList> branches) {
        NDArray total = branches.get(0).singletonOrThrow().add(branches.get(1).singletonOrThrow());
        return new NDList(total);
    }
}
