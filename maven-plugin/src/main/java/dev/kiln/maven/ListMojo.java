package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Lists every technique the worker discovers (Kiln's own and those in jars under the plugin's
 * {@code <dependencies>}) with its parameters, defaults and allowed values.
 */
@Mojo(name = "list", requiresProject = false, threadSafe = true)
public class ListMojo extends AbstractKilnMojo {

    /** Only this kind: {@code augment}, {@code merge}, {@code skip} or {@code compress}. */
    @Parameter(property = "kiln.kind")
    private String kind;

    /** Describe one technique in detail, as {@code kind:id} (e.g. {@code merge:ties}) or a bare id. */
    @Parameter(property = "kiln.describe")
    private String describe;

    @Override
    protected String workerGoal() {
        return "list";
    }

    @Override
    protected ObjectNode configuration() {
        ObjectNode config = newConfiguration();
        if (kind != null) {
            config.put("kind", kind);
        }
        if (describe != null) {
            config.put("describe", describe);
        }
        return config;
    }
}
