package dev.kiln.spi;

import java.util.List;
import java.util.Objects;
import java.util.function.Function;

/**
 * A ready-made {@link Technique} for the common case: fixed descriptor values and a factory function.
 *
 * <pre>{@code
 * SimpleTechnique.of(Kind.AUGMENT, "mixup", "Convex combination of two samples and their labels",
 *         List.of(ParameterSpec.decimal("alpha", 0.2, "Beta(alpha, alpha)").greaterThan(0)),
 *         params -> new Mixup(params.getDouble("alpha")))
 *     .withReference("Zhang et al. 2018, mixup: Beyond Empirical Risk Minimization");
 * }</pre>
 *
 * @param <T> the operation type of the kind
 */
public final class SimpleTechnique<T> implements Technique<T> {
    private final Kind kind;
    private final String id;
    private final String summary;
    private final String reference;
    private final List<ParameterSpec> parameters;
    private final Function<Parameters, ? extends T> factory;

    private SimpleTechnique(Kind kind, String id, String summary, String reference, List<ParameterSpec> parameters,
            Function<Parameters, ? extends T> factory) {
        this.kind = Objects.requireNonNull(kind);
        this.id = Objects.requireNonNull(id);
        this.summary = summary == null ? "" : summary;
        this.reference = reference == null ? "" : reference;
        this.parameters = List.copyOf(parameters);
        this.factory = Objects.requireNonNull(factory);
    }

    /** A technique of {@code kind} whose operations {@code factory} creates from bound parameters. */
    public static <T> SimpleTechnique<T> of(Kind kind, String id, String summary, List<ParameterSpec> parameters,
            Function<Parameters, ? extends T> factory) {
        return new SimpleTechnique<>(kind, id, summary, "", parameters, factory);
    }

    /** The same technique with a reference (paper or reference implementation). */
    public SimpleTechnique<T> withReference(String newReference) {
        return new SimpleTechnique<>(kind, id, summary, newReference, parameters, factory);
    }

    @Override
    public String id() {
        return id;
    }

    @Override
    public Kind kind() {
        return kind;
    }

    @Override
    public List<ParameterSpec> parameters() {
        return parameters;
    }

    @Override
    public String summary() {
        return summary;
    }

    @Override
    public String reference() {
        return reference;
    }

    @Override
    public T create(Parameters params) {
        return factory.apply(params);
    }

    @Override
    public String toString() {
        return kind.id() + ":" + id;
    }
}
