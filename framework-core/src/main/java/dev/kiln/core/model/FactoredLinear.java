package dev.kiln.core.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.AbstractBlock;
import ai.djl.nn.Parameter;
import ai.djl.nn.core.Linear;
import ai.djl.training.ParameterStore;
import ai.djl.util.PairList;
import dev.kiln.spi.KilnException;

/**
 * A fully connected layer whose weight is kept as a rank-r product, {@code W = U V} with {@code U} [out, r] and
 * {@code V} [r, in], and applied as two thin matmuls: {@code y = (x V^T) U^T + b}. That costs {@code r (in + out)}
 * multiply-adds per sample instead of {@code in * out}, so it pays off when {@code r < in * out / (in + out)}.
 *
 * <p>The parameters are named {@code weight.u}, {@code weight.v} and {@code bias}, so a zoo model registering this
 * block as {@code fc1} exposes {@code fc1.weight.u} and {@code fc1.weight.v}: the very names under which
 * {@code kiln:compress}'s low-rank compressor stores the factors ({@code .u} = U*S, {@code .v} = V^T).
 */
public final class FactoredLinear extends AbstractBlock {
    private static final byte VERSION = 1;

    private final int rank;
    private final long units;
    private final Parameter u;
    private final Parameter v;
    private final Parameter bias;
    private long inputFeatures = -1;

    /**
     * @param rank inner dimension r of the factorisation, at least 1
     * @param units output features
     */
    public FactoredLinear(int rank, long units) {
        super(VERSION);
        if (rank < 1) {
            throw new KilnException("factored Linear layer: rank must be at least 1, got " + rank);
        }
        if (units < 1) {
            throw new KilnException("factored Linear layer: units must be at least 1, got " + units);
        }
        this.rank = rank;
        this.units = units;
        // v first: it is the first matmul, and definition order is checkpoint order.
        v = addParameter(Parameter.builder().setName("weight.v").setType(Parameter.Type.WEIGHT).build());
        u = addParameter(Parameter.builder().setName("weight.u").setType(Parameter.Type.WEIGHT).build());
        bias = addParameter(Parameter.builder().setName("bias").setType(Parameter.Type.BIAS).build());
    }

    /** The inner rank r. */
    public int rank() {
        return rank;
    }

    /** Output features. */
    public long units() {
        return units;
    }

    @Override
    public void prepare(Shape[] inputShapes) {
        Shape input = inputShapes[0];
        if (input.dimension() < 1 || input.get(input.dimension() - 1) < 1) {
            throw new KilnException("factored Linear layer needs inputs with a feature axis, got " + input);
        }
        inputFeatures = input.get(input.dimension() - 1);
        v.setShape(new Shape(rank, inputFeatures));
        u.setShape(new Shape(units, rank));
        bias.setShape(new Shape(units));
    }

    @Override
    protected NDList forwardInternal(ParameterStore store, NDList inputs, boolean training,
            PairList<String, Object> params) {
        NDArray x = inputs.singletonOrThrow();
        NDArray vArray = store.getValue(v, x.getDevice(), training);
        NDArray uArray = store.getValue(u, x.getDevice(), training);
        NDArray b = store.getValue(bias, x.getDevice(), training);
        // Linear.linear computes x W^T (+ b) in one engine op, which is the layout both factors are stored in.
        NDArray inner = Linear.linear(x, vArray).singletonOrThrow();
        return Linear.linear(inner, uArray, b);
    }

    @Override
    public Shape[] getOutputShapes(Shape[] inputShapes) {
        Shape input = inputShapes[0];
        return new Shape[] {input.slice(0, input.dimension() - 1).add(units)};
    }

    @Override
    public String toString() {
        return "FactoredLinear(rank=" + rank + ", units=" + units + ")";
    }
}
