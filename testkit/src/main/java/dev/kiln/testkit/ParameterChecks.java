package dev.kiln.testkit;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.ParameterType;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Checks every kind shares: id, parameter descriptors, binding, creation and rejection of bad values. */
final class ParameterChecks {
    private ParameterChecks() {
    }

    static void descriptor(Technique<?> technique, Findings findings) {
        if (findings.on(TechniqueContract.ID)) {
            String id = technique.id();
            if (id == null || !Registry.ID_SYNTAX.matcher(id).matches()) {
                findings.fail("id '" + id + "' does not match " + Registry.ID_SYNTAX.pattern()
                        + " (lower-case words joined by '-')");
            }
        }
        if (!findings.on(TechniqueContract.PARAMETERS)) {
            return;
        }
        List<ParameterSpec> specs = technique.parameters();
        if (specs == null) {
            findings.fail("parameters() returned null; return List.of() when there are none");
            return;
        }
        Set<String> names = new HashSet<>();
        for (ParameterSpec spec : specs) {
            if (spec == null) {
                findings.fail("parameters() contains null");
                continue;
            }
            if (!names.add(spec.name())) {
                findings.fail("parameter '" + spec.name() + "' is declared twice");
            }
            if (spec.doc().isBlank()) {
                findings.fail("parameter '" + spec.name() + "' has no doc");
            }
        }
    }

    /** Binds the author's values over the defaults; null (with a violation) when that fails. */
    static Parameters bind(Technique<?> technique, Map<String, String> values, Findings findings) {
        try {
            return Parameters.bind(technique, values);
        } catch (RuntimeException e) {
            findings.fail("parameters " + (values.isEmpty() ? "(defaults)" : values) + " do not bind: "
                    + Findings.describe(e) + (values.isEmpty() ? "; pass required ones with withParameters(...)" : ""));
            return null;
        }
    }

    /** Creates the operation and checks its type; null (with a violation) when that fails. */
    static Object create(Technique<?> technique, Parameters parameters, Findings findings) {
        Kind kind = technique.kind();
        Object operation;
        try {
            operation = technique.create(parameters);
        } catch (RuntimeException e) {
            findings.fail("create(" + parameters + ") threw " + Findings.describe(e));
            return null;
        }
        if (operation == null) {
            findings.fail("create(" + parameters + ") returned null");
            return null;
        }
        if (!kind.operationType().isInstance(operation)) {
            findings.fail("create(" + parameters + ") returned a " + operation.getClass().getName() + ", not a "
                    + kind.operationType().getName());
            return null;
        }
        return operation;
    }

    static void invalidValues(Technique<?> technique, Map<String, String> base, Findings findings) {
        if (!findings.on(TechniqueContract.INVALID_PARAMETERS) || technique.parameters() == null) {
            return;
        }
        for (ParameterSpec spec : technique.parameters()) {
            if (spec == null) {
                continue;
            }
            for (String bad : badValues(spec)) {
                Map<String, String> raw = new HashMap<>(base);
                raw.put(spec.name(), bad);
                try {
                    Parameters.bind(technique, raw);
                    findings.fail("parameter '" + spec.name() + "' accepted the invalid value '" + bad + "' (allowed: "
                            + spec.allowed() + ")");
                } catch (KilnException e) {
                    String message = String.valueOf(e.getMessage());
                    if (!message.contains(spec.name())) {
                        findings.fail("rejecting '" + bad + "' for parameter '" + spec.name()
                                + "', the message does not name the parameter: " + message);
                    }
                } catch (RuntimeException e) {
                    findings.fail("parameter '" + spec.name() + "' = '" + bad + "' threw " + Findings.describe(e)
                            + " instead of a KilnException");
                }
            }
        }
    }

    /** Values just outside each finite bound, a bogus word for choices, a non-boolean for flags. */
    static List<String> badValues(ParameterSpec spec) {
        List<String> bad = new ArrayList<>();
        ParameterType type = spec.type();
        if (type == ParameterType.DOUBLE) {
            if (Double.isFinite(spec.min())) {
                bad.add(Double.toString(spec.minInclusive() ? Math.nextDown(spec.min()) : spec.min()));
            }
            if (Double.isFinite(spec.max())) {
                bad.add(Double.toString(spec.maxInclusive() ? Math.nextUp(spec.max()) : spec.max()));
            }
        } else if (type == ParameterType.INT) {
            // The unbounded integer range is stored as the long extremes, which are not limits an author chose.
            if (spec.min() > Long.MIN_VALUE) {
                long below = spec.minInclusive() ? (long) Math.ceil(spec.min()) - 1 : (long) Math.floor(spec.min());
                bad.add(Long.toString(below));
            }
            if (spec.max() < Long.MAX_VALUE) {
                long above = spec.maxInclusive() ? (long) Math.floor(spec.max()) + 1 : (long) Math.ceil(spec.max());
                bad.add(Long.toString(above));
            }
        } else if (type == ParameterType.CHOICE) {
            bad.add("zzz-bogus-word");
        } else if (type == ParameterType.BOOLEAN) {
            bad.add("maybe");
        }
        return bad;
    }
}
