package dev.kiln.maven;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One technique in a pom: {@code <technique><id>cutmix</id><params><alpha>1.0</alpha></params></technique>}.
 * The same ids and parameter names as {@code mvn kiln:list} shows.
 */
public class TechniqueConfig {
    /** The technique id, e.g. {@code cutmix}. */
    private String id;

    /** Parameter values by name; unknown names and bad values fail before any work. */
    private Map<String, String> params = new LinkedHashMap<>();

    public String getId() {
        return id;
    }

    public void setId(String id) {
        this.id = id;
    }

    public Map<String, String> getParams() {
        return params;
    }

    public void setParams(Map<String, String> params) {
        this.params = params == null ? new LinkedHashMap<>() : params;
    }
}
