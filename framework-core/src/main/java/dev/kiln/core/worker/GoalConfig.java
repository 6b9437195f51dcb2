package dev.kiln.core.worker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.spi.KilnException;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/** Reading a goal's JSON configuration as the mojos write it: blank means absent, parameters are strings. */
public final class GoalConfig {
    private GoalConfig() {
    }

    /** The trimmed text of {@code field}, or null when it is missing, null or blank. */
    public static String text(JsonNode node, String field) {
        JsonNode value = node == null ? null : node.get(field);
        return value == null || value.isNull() || value.asText().isBlank() ? null : value.asText().trim();
    }

    /** The trimmed text of {@code field}, or {@code fallback}. */
    public static String text(JsonNode node, String field, String fallback) {
        String value = text(node, field);
        return value == null ? fallback : value;
    }

    /** The text of a field the goal cannot run without; the error names the pom element. */
    public static String required(JsonNode node, String field, String goal) {
        String value = text(node, field);
        if (value == null) {
            throw new KilnException(goal + ": <" + field + "> is required");
        }
        return value;
    }

    /** An object of parameters ({@code <params>}) as name to string value, in order; empty when absent. */
    public static Map<String, String> strings(JsonNode node) {
        Map<String, String> values = new LinkedHashMap<>();
        if (node != null) {
            for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> field = it.next();
                values.put(field.getKey(), field.getValue().asText());
            }
        }
        return values;
    }
}
