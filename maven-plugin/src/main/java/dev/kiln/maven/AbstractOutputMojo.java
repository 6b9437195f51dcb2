package dev.kiln.maven;

import java.io.File;
import org.apache.maven.plugins.annotations.Parameter;
import org.apache.maven.project.MavenProject;
import org.apache.maven.project.MavenProjectHelper;

/**
 * Goals that write a model file (train, merge, compress): the up-to-date override and attaching what they wrote to
 * the project, so that {@code install} and {@code deploy} publish it with the module.
 */
public abstract class AbstractOutputMojo extends AbstractKilnMojo {

    /** Redo the work even when the output is up to date with its inputs and configuration. */
    @Parameter(property = "kiln.force", defaultValue = "false")
    private boolean force;

    /** Attach the outputs to the project (installed and deployed with it). */
    @Parameter(property = "kiln.attach", defaultValue = "true")
    private boolean attach;

    @Parameter(defaultValue = "${project}", readonly = true)
    private MavenProject project;

    @javax.inject.Inject
    private MavenProjectHelper projectHelper;

    /** Whether {@code -Dkiln.force} (or {@code <force>}) asks to redo up-to-date work. */
    protected boolean force() {
        return force;
    }

    /**
     * Attaches {@code file} (a path from the worker's result, or null) as {@code type} with {@code classifier};
     * nothing happens when attaching is off or Maven runs without a project.
     */
    protected void attach(Object file, String type, String classifier) {
        if (file == null || !attach || project == null || projectHelper == null
                || "standalone-pom".equals(project.getArtifactId())) {
            return;
        }
        projectHelper.attachArtifact(project, type, classifier, new File(file.toString()));
    }
}
