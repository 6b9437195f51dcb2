package dev.kiln.spi;

import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * Describes one parameter of a technique: name, type, default, allowed range or values, and a one-line doc.
 *
 * <p>Built with the static factories, for example
 * {@code ParameterSpec.decimal("alpha", 1.0, "Beta(alpha, alpha) shape").greaterThan(0)}. A spec with a {@code null}
 * default is required. Defaults are checked against the range when the spec is built, so a descriptor can never
 * advertise a default it would reject.
 */
public final class ParameterSpec {
    private final String name;
    private final ParameterType type;
    private final Object defaultValue;
    private final String doc;
    private final double min;
    private final boolean minInclusive;
    private final double max;
    private final boolean maxInclusive;
    private final List<String> choices;

    private ParameterSpec(String name, ParameterType type, Object defaultValue, String doc, double min,
            boolean minInclusive, double max, boolean maxInclusive, List<String> choices) {
        if (name == null || !name.matches("[a-z][a-z0-9]*([-_][a-z0-9]+)*")) {
            throw new IllegalArgumentException("parameter name '" + name
                    + "' must be lower-case words joined by '-' or '_'");
        }
        this.name = name;
        this.type = Objects.requireNonNull(type);
        this.defaultValue = defaultValue;
        this.doc = doc == null ? "" : doc;
        this.min = min;
        this.minInclusive = minInclusive;
        this.max = max;
        this.maxInclusive = maxInclusive;
        this.choices = List.copyOf(choices);
        if (defaultValue != null) {
            String problem = check(defaultValue);
            if (problem != null) {
                throw new IllegalArgumentException("default of parameter '" + name + "' " + problem);
            }
        }
    }

    /** A floating-point parameter; {@code defaultValue} may be null for a required one. */
    public static ParameterSpec decimal(String name, Double defaultValue, String doc) {
        return new ParameterSpec(name, ParameterType.DOUBLE, defaultValue, doc, Double.NEGATIVE_INFINITY, true,
                Double.POSITIVE_INFINITY, true, List.of());
    }

    /** An integer parameter; {@code defaultValue} may be null for a required one. */
    public static ParameterSpec integer(String name, Long defaultValue, String doc) {
        return new ParameterSpec(name, ParameterType.INT, defaultValue, doc, Long.MIN_VALUE, true, Long.MAX_VALUE,
                true, List.of());
    }

    /** A boolean parameter. */
    public static ParameterSpec flag(String name, boolean defaultValue, String doc) {
        return new ParameterSpec(name, ParameterType.BOOLEAN, defaultValue, doc, 0, true, 0, true, List.of());
    }

    /** A free-text parameter; {@code defaultValue} may be null for a required one. */
    public static ParameterSpec text(String name, String defaultValue, String doc) {
        return new ParameterSpec(name, ParameterType.STRING, defaultValue, doc, 0, true, 0, true, List.of());
    }

    /** A parameter that takes one of {@code choices}; {@code defaultValue} may be null for a required one. */
    public static ParameterSpec choice(String name, String defaultValue, List<String> choices, String doc) {
        if (choices.isEmpty()) {
            throw new IllegalArgumentException("parameter '" + name + "' needs at least one choice");
        }
        return new ParameterSpec(name, ParameterType.CHOICE, defaultValue, doc, 0, true, 0, true, choices);
    }

    /** Values must be {@code >= min} and {@code <= max}. */
    public ParameterSpec between(double min, double max) {
        return withRange(min, true, max, true);
    }

    /** Values must be {@code > min}. */
    public ParameterSpec greaterThan(double min) {
        return withRange(min, false, max, maxInclusive);
    }

    /** Values must be {@code >= min}. */
    public ParameterSpec atLeast(double min) {
        return withRange(min, true, max, maxInclusive);
    }

    /** Values must be {@code < max}. */
    public ParameterSpec lessThan(double max) {
        return withRange(min, minInclusive, max, false);
    }

    /** Values must be {@code <= max}. */
    public ParameterSpec atMost(double max) {
        return withRange(min, minInclusive, max, true);
    }

    private ParameterSpec withRange(double newMin, boolean newMinInclusive, double newMax, boolean newMaxInclusive) {
        if (type != ParameterType.DOUBLE && type != ParameterType.INT) {
            throw new IllegalStateException("parameter '" + name + "' is " + type + " and cannot have a range");
        }
        return new ParameterSpec(name, type, defaultValue, doc, newMin, newMinInclusive, newMax, newMaxInclusive,
                choices);
    }

    public String name() {
        return name;
    }

    public ParameterType type() {
        return type;
    }

    /** The default value (Double, Long, Boolean or String), or null when the parameter is required. */
    public Object defaultValue() {
        return defaultValue;
    }

    public boolean required() {
        return defaultValue == null;
    }

    public String doc() {
        return doc;
    }

    /** The allowed words of a {@link ParameterType#CHOICE} parameter, otherwise empty. */
    public List<String> choices() {
        return choices;
    }

    /** Lower bound of a numeric parameter ({@code -Infinity} when unbounded). */
    public double min() {
        return min;
    }

    public boolean minInclusive() {
        return minInclusive;
    }

    /** Upper bound of a numeric parameter ({@code Infinity} when unbounded). */
    public double max() {
        return max;
    }

    public boolean maxInclusive() {
        return maxInclusive;
    }

    /** The allowed values in words: {@code (0, inf)}, {@code [0, 1]}, {@code one of: per-tensor, global}. */
    public String allowed() {
        switch (type) {
            case CHOICE:
                return "one of: " + String.join(", ", choices);
            case BOOLEAN:
                return "true or false";
            case STRING:
                return "any text";
            default:
                if (min == Double.NEGATIVE_INFINITY && max == Double.POSITIVE_INFINITY
                        || type == ParameterType.INT && min == Long.MIN_VALUE && max == Long.MAX_VALUE) {
                    return "any " + (type == ParameterType.INT ? "integer" : "number");
                }
                boolean closedBelow = minInclusive && !Double.isInfinite(min);
                boolean closedAbove = maxInclusive && !Double.isInfinite(max);
                return (closedBelow ? "[" : "(") + bound(min) + ", " + bound(max) + (closedAbove ? "]" : ")");
        }
    }

    /** The default written as it would be in a pom, or empty for a required parameter. */
    public String defaultText() {
        return defaultValue == null ? "" : format(defaultValue);
    }

    private String bound(double v) {
        if (v == Double.POSITIVE_INFINITY || type == ParameterType.INT && v >= Long.MAX_VALUE) {
            return "inf";
        }
        if (v == Double.NEGATIVE_INFINITY || type == ParameterType.INT && v <= Long.MIN_VALUE) {
            return "-inf";
        }
        return type == ParameterType.INT ? Long.toString((long) v) : format(v);
    }

    static String format(Object value) {
        if (value instanceof Double) {
            double d = (Double) value;
            if (d == Math.rint(d) && Math.abs(d) < 1e15) {
                return String.format(Locale.ROOT, "%.1f", d);
            }
            return Double.toString(d);
        }
        return String.valueOf(value);
    }

    /** Parses a raw string into the typed value; the exception message says what was expected. */
    Object parse(String raw) {
        String text = raw.trim();
        switch (type) {
            case DOUBLE:
                try {
                    String lower = text.toLowerCase(Locale.ROOT);
                    if (lower.equals("inf") || lower.equals("+inf") || lower.equals("infinity")) {
                        return Double.POSITIVE_INFINITY;
                    }
                    if (lower.equals("-inf") || lower.equals("-infinity")) {
                        return Double.NEGATIVE_INFINITY;
                    }
                    double d = Double.parseDouble(text);
                    if (Double.isNaN(d)) {
                        throw new NumberFormatException();
                    }
                    return d;
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("is not a number");
                }
            case INT:
                try {
                    return Long.parseLong(text);
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException("is not an integer");
                }
            case BOOLEAN:
                if (text.equalsIgnoreCase("true")) {
                    return Boolean.TRUE;
                }
                if (text.equalsIgnoreCase("false")) {
                    return Boolean.FALSE;
                }
                throw new IllegalArgumentException("is not true or false");
            default:
                return text;
        }
    }

    /** Returns null when {@code value} is allowed, otherwise what is wrong with it. */
    String check(Object value) {
        switch (type) {
            case DOUBLE:
            case INT: {
                double v = ((Number) value).doubleValue();
                boolean aboveMin = minInclusive ? v >= min : v > min;
                boolean belowMax = maxInclusive ? v <= max : v < max;
                return aboveMin && belowMax ? null : "is outside the allowed range " + allowed();
            }
            case CHOICE:
                return choices.contains(value) ? null : "is not " + allowed();
            default:
                return null;
        }
    }

    @Override
    public String toString() {
        return name + " (" + type.name().toLowerCase(Locale.ROOT) + ", " + allowed()
                + (required() ? ", required" : ", default " + defaultText()) + ")";
    }
}
