package dev.kiln.merge;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.ModelTensor;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * The validated inputs of one merge call plus a scratch manager for its intermediates.
 *
 * <p>DJL attaches a result to the manager of its first operand, so without care every intermediate of a merge would
 * pile up in the caller's manager until the whole checkpoint is done. The inputs are therefore temporarily attached
 * to a sub-manager of the caller's: every array derived from them lands there and is freed when the scope closes,
 * at which point DJL hands the inputs back to their own managers untouched. Only the array passed to
 * {@link #finish} survives, attached to the caller's manager.
 */
final class Scope implements AutoCloseable {
    private final String method;
    private final MergeInput input;
    private final NDManager caller;
    private final NDManager scratch;

    private Scope(String method, MergeInput input) {
        this.method = method;
        this.input = input;
        this.caller = input.models().get(0).tensor().getManager();
        this.scratch = caller.newSubManager();
        // The same array may be passed twice (a model equal to the base); attaching it twice would make the
        // scratch manager its "original" owner and lose it on close.
        Set<NDArray> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        for (ModelTensor model : input.models()) {
            borrow(model.tensor(), seen);
            borrow(model.statistic(), seen);
        }
        borrow(input.base(), seen);
    }

    private void borrow(NDArray array, Set<NDArray> seen) {
        if (array != null && seen.add(array)) {
            array.tempAttach(scratch);
        }
    }

    /**
     * Validates {@code input} for {@code method} and opens a scope over it: at least one model, a base when
     * {@code needsBase}, float32 everywhere, one shape for all tensors and statistics of the name.
     */
    static Scope open(String method, MergeInput input, boolean needsBase) {
        String name = input.tensorName();
        List<ModelTensor> models = input.models();
        if (models == null || models.isEmpty()) {
            throw new KilnException("merge method '" + method + "' got no models for tensor '" + name + "'");
        }
        if (needsBase && input.base() == null) {
            throw new KilnException("merge method '" + method + "' needs a base model (its task vectors are "
                    + "differences to the base), but tensor '" + name + "' has no base tensor");
        }
        Shape shape = models.get(0).tensor().getShape();
        for (int i = 0; i < models.size(); i++) {
            ModelTensor model = models.get(i);
            checkArray(method, name, "model " + i, model.tensor(), shape, "model 0");
            if (!Double.isFinite(model.weight())) {
                throw new KilnException("tensor '" + name + "': model " + i + " has weight " + model.weight()
                        + "; merge method '" + method + "' needs finite weights");
            }
            if (model.statistic() != null) {
                checkArray(method, name, "the statistic of model " + i, model.statistic(), shape, "model 0");
            }
        }
        if (input.base() != null) {
            checkArray(method, name, "the base", input.base(), shape, "model 0");
        }
        return new Scope(method, input);
    }

    private static void checkArray(String method, String name, String what, NDArray array, Shape shape,
            String reference) {
        if (array.getDataType() != DataType.FLOAT32) {
            throw new KilnException("tensor '" + name + "': " + what + " is "
                    + array.getDataType().toString().toLowerCase(Locale.ROOT) + ", but merge method '" + method
                    + "' works on float32 tensors");
        }
        if (!array.getShape().equals(shape)) {
            throw new KilnException("tensor '" + name + "': " + what + " has shape " + array.getShape() + " but "
                    + reference + " has shape " + shape + "; merge method '" + method
                    + "' needs all tensors of one name to have the same shape");
        }
    }

    String method() {
        return method;
    }

    String name() {
        return input.tensorName();
    }

    MergeInput input() {
        return input;
    }

    int size() {
        return input.models().size();
    }

    ModelTensor model(int i) {
        return input.models().get(i);
    }

    NDArray tensor(int i) {
        return input.models().get(i).tensor();
    }

    NDArray base() {
        return input.base();
    }

    Shape shape() {
        return tensor(0).getShape();
    }

    /** The manager for arrays that the method creates from scratch (masks, constants). */
    NDManager manager() {
        return scratch;
    }

    /**
     * A per-model override of {@code parameter} (e.g. {@code density}), else {@code fallback}, checked against
     * {@code [min, max]} ({@code minOpen} excludes the lower bound) so a bad override names the model and tensor.
     */
    double perModel(int i, String parameter, double fallback, double min, boolean minOpen, double max) {
        return perModel(method, "tensor '" + name() + "'", i, model(i).overrides(), parameter, fallback, min, minOpen,
                max);
    }

    /**
     * {@link #perModel(int, String, double, double, boolean, double)} without a scope, for checks made before any
     * tensor is loaded; {@code where} names what is being merged (e.g. {@code tensor 'w'}).
     */
    static double perModel(String method, String where, int i, Map<String, Double> overrides, String parameter,
            double fallback, double min, boolean minOpen, double max) {
        Double override = overrides.get(parameter);
        double value = override == null ? fallback : override;
        boolean ok = (minOpen ? value > min : value >= min) && value <= max;
        if (!ok || Double.isNaN(value)) {
            throw new KilnException(where + ": model " + i + " sets " + parameter + " = " + value
                    + " for merge method '" + method + "', allowed " + (minOpen ? "(" : "[") + min + ", " + max
                    + "]");
        }
        return value;
    }

    /** Hands {@code result} to the caller's manager so it outlives the scope. */
    NDArray finish(NDArray result) {
        result.attach(caller);
        return result;
    }

    @Override
    public void close() {
        scratch.close();
    }
}
