package dev.kiln.core.worker;

import static dev.kiln.core.worker.GoalConfig.text;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.inject.Inject;

/**
 * Lists every discovered technique with its parameters, or describes one ({@code describe = "merge:ties"}); an
 * unknown id fails with the closest valid id, exactly as it would in any other goal.
 */
public final class ListGoal implements Goal {
    private final Registry registry;

    @Inject
    ListGoal(Registry registry) {
        this.registry = registry;
    }

    @Override
    public String name() {
        return "list";
    }

    @Override
    public Map<String, Object> run(WorkerRequest request, EventSink events) {
        JsonNode config = request.config();
        String kindFilter = text(config, "kind");
        String describe = text(config, "describe");
        List<Technique<?>> shown = new ArrayList<>();
        if (describe != null) {
            shown.add(lookup(describe));
        } else if (kindFilter != null) {
            shown.addAll(registry.all(Kind.fromId(kindFilter)));
        } else {
            shown.addAll(registry.all());
        }
        Kind current = null;
        List<String> ids = new ArrayList<>();
        for (Technique<?> technique : shown) {
            if (technique.kind() != current) {
                current = technique.kind();
                events.emit(Event.info(""));
                events.emit(Event.info(current.id() + " (" + current.noun() + "s)"));
            }
            ids.add(current.id() + ":" + technique.id());
            events.emit(Event.info("  " + technique.id() + (technique.summary().isEmpty() ? ""
                    : " - " + technique.summary())));
            for (ParameterSpec spec : technique.parameters()) {
                events.emit(Event.info("      " + spec.name() + " = "
                        + (spec.required() ? "(required)" : spec.defaultText()) + "   " + spec.allowed()
                        + (spec.doc().isEmpty() ? "" : "   " + spec.doc())));
            }
            if (describe != null) {
                if (!technique.reference().isEmpty()) {
                    events.emit(Event.info("    reference: " + technique.reference()));
                }
                events.emit(Event.info("    from: " + registry.origin(technique)));
            }
        }
        if (shown.isEmpty()) {
            events.emit(Event.info("no techniques found; add technique jars to the plugin's <dependencies>"));
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("techniques", ids);
        return result;
    }

    /** {@code kind:id}, or a bare id that is looked up in every kind. */
    private Technique<?> lookup(String describe) {
        int colon = describe.indexOf(':');
        if (colon >= 0) {
            return registry.find(Kind.fromId(describe.substring(0, colon)), describe.substring(colon + 1).trim());
        }
        for (Kind kind : Kind.values()) {
            for (Technique<?> technique : registry.all(kind)) {
                if (technique.id().equals(describe.trim())) {
                    return technique;
                }
            }
        }
        // Not found anywhere: report against the kind whose ids are closest, via the registry's own message.
        dev.kiln.spi.KilnException best = null;
        for (Kind kind : Kind.values()) {
            try {
                registry.find(kind, describe.trim());
            } catch (dev.kiln.spi.KilnException e) {
                if (best == null || e.getMessage().contains("did you mean") && !best.getMessage().contains(
                        "did you mean")) {
                    best = e;
                }
            }
        }
        throw best;
    }
}
