package dev.kiln.spi;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Parameter values bound to a technique's {@link ParameterSpec}s: every declared parameter has a value of its
 * declared type, within its declared range. Created by {@link #bind}; immutable.
 */
public final class Parameters {
    private final String techniqueId;
    private final Map<String, Object> values;

    private Parameters(String techniqueId, Map<String, Object> values) {
        this.techniqueId = techniqueId;
        this.values = Collections.unmodifiableMap(values);
    }

    /**
     * Binds raw string values (from a pom or YAML) to the technique's specs: unknown names, unparsable values,
     * values out of range and missing required parameters all fail with a {@link KilnException} naming the
     * technique and the parameter.
     */
    public static Parameters bind(Technique<?> technique, Map<String, String> raw) {
        return bind(technique.kind().noun() + " '" + technique.id() + "'", technique.id(), technique.parameters(),
                raw);
    }

    /**
     * Binds raw values to {@code specs} for something that is not a technique (a zoo model, a goal option), with the
     * same validation and messages; {@code where} names it in them, e.g. {@code "model 'cnn'"}.
     */
    public static Parameters bind(String where, String id, List<ParameterSpec> specs, Map<String, String> raw) {
        Map<String, ParameterSpec> byName = new LinkedHashMap<>();
        for (ParameterSpec spec : specs) {
            byName.put(spec.name(), spec);
        }
        for (String name : raw.keySet()) {
            if (!byName.containsKey(name)) {
                String known = byName.isEmpty() ? "it takes no parameters" : "its parameters are: "
                        + String.join(", ", byName.keySet());
                String suggestion = Names.closest(name, byName.keySet());
                throw new KilnException("unknown parameter '" + name + "' for " + where
                        + (suggestion == null ? "" : "; did you mean '" + suggestion + "'?") + " (" + known + ")");
            }
        }
        Map<String, Object> values = new LinkedHashMap<>();
        for (ParameterSpec spec : specs) {
            String text = raw.get(spec.name());
            Object value;
            if (text == null) {
                if (spec.required()) {
                    throw new KilnException("missing required parameter '" + spec.name() + "' for " + where + ": "
                            + spec.doc() + " (" + spec.allowed() + ")");
                }
                value = spec.defaultValue();
            } else {
                try {
                    value = spec.parse(text);
                } catch (IllegalArgumentException e) {
                    throw new KilnException("parameter '" + spec.name() + "' of " + where + ": '" + text + "' "
                            + e.getMessage() + " (allowed: " + spec.allowed() + ")");
                }
                String problem = spec.check(value);
                if (problem != null) {
                    throw new KilnException("parameter '" + spec.name() + "' of " + where + ": " + text + " "
                            + problem);
                }
            }
            values.put(spec.name(), value);
        }
        return new Parameters(id, values);
    }

    /** Binds the defaults only. */
    public static Parameters defaults(Technique<?> technique) {
        return bind(technique, Map.of());
    }

    /** The id of the technique these values belong to. */
    public String techniqueId() {
        return techniqueId;
    }

    public double getDouble(String name) {
        return ((Number) get(name)).doubleValue();
    }

    public long getLong(String name) {
        return ((Number) get(name)).longValue();
    }

    /** An integer parameter as an int; fails clearly if the value does not fit. */
    public int getInt(String name) {
        long value = getLong(name);
        if (value != (int) value) {
            throw new KilnException("parameter '" + name + "' of '" + techniqueId + "' is too large: " + value);
        }
        return (int) value;
    }

    public boolean getBoolean(String name) {
        return (Boolean) get(name);
    }

    public String getString(String name) {
        return (String) get(name);
    }

    /** All values by name, in declaration order, for reports and model cards. */
    public Map<String, Object> asMap() {
        return values;
    }

    private Object get(String name) {
        Object value = values.get(name);
        if (value == null && !values.containsKey(name)) {
            throw new IllegalArgumentException("technique '" + techniqueId + "' declares no parameter '" + name
                    + "'; declared: " + values.keySet());
        }
        return value;
    }

    @Override
    public String toString() {
        return values.toString();
    }
}
