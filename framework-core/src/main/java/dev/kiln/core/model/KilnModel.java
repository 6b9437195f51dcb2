package dev.kiln.core.model;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.nn.Parameter;
import ai.djl.training.ParameterStore;
import ai.djl.util.Pair;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Parameters;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * A zoo model: a DJL block plus the stable, human-readable names of its parameters ({@code conv1.weight},
 * {@code bn1.running_mean}, {@code fc.bias}), which checkpoints, merges and reports use instead of DJL's positional
 * keys such as {@code 01Conv2d_weight}.
 *
 * <p>Names come from the model definition, not from DJL's block tree, so inserting an activation does not rename
 * every later parameter. Call {@link #initialize} once before use.
 */
public final class KilnModel {
    private final String id;
    private final Parameters parameters;
    private final Block block;
    private final List<Pair<String, Block>> namedBlocks;
    private final Shape sampleShape;
    private final int numClasses;
    private final Map<String, Parameter> byName = new LinkedHashMap<>();

    KilnModel(String id, Parameters parameters, Block block, List<Pair<String, Block>> namedBlocks, Shape sampleShape,
            int numClasses) {
        this.id = id;
        this.parameters = parameters;
        this.block = block;
        this.namedBlocks = List.copyOf(namedBlocks);
        this.sampleShape = sampleShape;
        this.numClasses = numClasses;
    }

    /** The zoo id: {@code mlp}, {@code cnn} or {@code resnet}. */
    public String id() {
        return id;
    }

    /** The model's bound parameters (widths, depths), for model cards. */
    public Parameters modelParameters() {
        return parameters;
    }

    /** The underlying DJL block. */
    public Block block() {
        return block;
    }

    /** One input sample's shape, (C, H, W). */
    public Shape sampleShape() {
        return sampleShape;
    }

    public int numClasses() {
        return numClasses;
    }

    /**
     * Creates the parameters in {@code manager}. DJL draws initial weights from the engine's generator, which is
     * seeded here, so the same seed gives the same weights.
     */
    public KilnModel initialize(NDManager manager, long seed) {
        if (!byName.isEmpty()) {
            throw new IllegalStateException("model '" + id + "' is already initialised");
        }
        Engine.getInstance().setRandomSeed((int) (seed ^ (seed >>> 32)));
        block.initialize(manager, DataType.FLOAT32, new Shape(1).addAll(sampleShape));
        for (Pair<String, Block> named : namedBlocks) {
            for (Pair<String, Parameter> p : named.getValue().getDirectParameters()) {
                String name = named.getKey() + "." + stableName(p.getValue().getName());
                if (byName.put(name, p.getValue()) != null) {
                    throw new IllegalStateException("model '" + id + "' names two parameters " + name);
                }
            }
        }
        // Every DJL parameter must have a stable name, or checkpoints would silently drop it.
        Set<Parameter> named = Collections.newSetFromMap(new IdentityHashMap<>());
        named.addAll(byName.values());
        for (Pair<String, Parameter> p : block.getParameters()) {
            if (!named.contains(p.getValue())) {
                throw new IllegalStateException("model '" + id + "' has no stable name for " + p.getKey());
            }
        }
        for (Parameter p : byName.values()) {
            if (p.requiresGradient()) {
                p.getArray().setRequiresGradient(true);
            }
        }
        return this;
    }

    /** PyTorch-style names for DJL's parameter names, so checkpoints read naturally next to torch ones. */
    private static String stableName(String djlName) {
        switch (djlName) {
            case "gamma":
                return "weight";
            case "beta":
                return "bias";
            case "runningMean":
                return "running_mean";
            case "runningVar":
                return "running_var";
            default:
                return djlName;
        }
    }

    /** The parameters by stable name, in definition order (trainable ones and running statistics alike). */
    public Map<String, Parameter> parameters() {
        requireInitialised();
        return Collections.unmodifiableMap(byName);
    }

    /** Number of scalar values in all parameters. */
    public long parameterCount() {
        long total = 0;
        for (Parameter p : parameters().values()) {
            total += p.getArray().size();
        }
        return total;
    }

    /** Logits (N, K) for inputs (N, C, H, W); {@code training} selects batch statistics in batch norm. */
    public NDArray forward(ParameterStore store, NDArray inputs, boolean training) {
        return block.forward(store, new NDList(inputs), training).singletonOrThrow();
    }

    /** Copies of all parameters, attached to {@code manager}, each named with its stable name. */
    public Map<String, NDArray> exportParameters(NDManager manager) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        for (Map.Entry<String, Parameter> e : parameters().entrySet()) {
            NDArray copy = e.getValue().getArray().duplicate();
            copy.attach(manager);
            copy.setName(e.getKey());
            out.put(e.getKey(), copy);
        }
        return out;
    }

    /**
     * Overwrites every parameter in place with the array of the same name. The names must match exactly and the
     * shapes must agree; nothing is written unless all of them do.
     */
    public void loadParameters(Map<String, NDArray> arrays) {
        Map<String, Parameter> params = parameters();
        Set<String> missing = new TreeSet<>(params.keySet());
        missing.removeAll(arrays.keySet());
        Set<String> unexpected = new TreeSet<>(arrays.keySet());
        unexpected.removeAll(params.keySet());
        if (!missing.isEmpty() || !unexpected.isEmpty()) {
            throw new KilnException("parameters do not fit model '" + id + "'"
                    + (missing.isEmpty() ? "" : "; missing: " + String.join(", ", missing))
                    + (unexpected.isEmpty() ? "" : "; not in the model: " + String.join(", ", unexpected)));
        }
        for (Map.Entry<String, Parameter> e : params.entrySet()) {
            Shape want = e.getValue().getArray().getShape();
            Shape got = arrays.get(e.getKey()).getShape();
            if (!want.equals(got)) {
                throw new KilnException("tensor '" + e.getKey() + "' has shape " + got + " but model '" + id
                        + "' needs " + want);
            }
            DataType type = arrays.get(e.getKey()).getDataType();
            if (!type.isFloating()) {
                throw new KilnException("tensor '" + e.getKey() + "' has dtype " + type + "; a float type is needed");
            }
        }
        for (Map.Entry<String, Parameter> e : params.entrySet()) {
            NDArray target = e.getValue().getArray();
            NDArray source = arrays.get(e.getKey()).toDevice(target.getDevice(), false)
                    .toType(target.getDataType(), false);
            // setArray refuses an initialised parameter; writing in place keeps the optimiser's view valid too.
            target.set(new ai.djl.ndarray.index.NDIndex(":"), source);
        }
    }

    private void requireInitialised() {
        if (byName.isEmpty()) {
            throw new IllegalStateException("model '" + id + "' is not initialised; call initialize first");
        }
    }

    @Override
    public String toString() {
        return id + parameters.asMap();
    }
}
