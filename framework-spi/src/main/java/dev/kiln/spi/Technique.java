package dev.kiln.spi;

import java.util.List;

/**
 * One technique: a stable id, its kind, its typed parameters, and a factory for the operation it performs.
 *
 * <p>Implementations are immutable descriptors; {@link #create(Parameters)} is called once per use with parameters
 * that the registry has already bound and validated against {@link #parameters()}, so the operation never sees a
 * missing, misspelt or out-of-range value. Everything added to this interface later arrives as a default method.
 *
 * @param <T> the operation type of the technique's {@link #kind()}
 */
public interface Technique<T> {

    /**
     * The stable id used in poms, YAML, reports and the {@code list} goal: lower-case words joined by hyphens
     * ({@code cutmix}, {@code task-arithmetic}). Unique within its kind across every jar on the class path.
     */
    String id();

    /** The extension point this technique plugs into. */
    Kind kind();

    /** The typed parameters, in the order they should be documented. */
    default List<ParameterSpec> parameters() {
        return List.of();
    }

    /** One sentence saying what the technique does. */
    default String summary() {
        return "";
    }

    /** Where the technique comes from: the paper or reference implementation, for the docs and reports. */
    default String reference() {
        return "";
    }

    /** Creates the operation from validated parameters. */
    T create(Parameters parameters);
}
