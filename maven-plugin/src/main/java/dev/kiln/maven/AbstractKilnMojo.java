package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.core.worker.Worker;
import dev.kiln.core.worker.WorkerLauncher;
import dev.kiln.core.worker.WorkerRequest;
import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.maven.artifact.Artifact;
import org.apache.maven.execution.MavenSession;
import org.apache.maven.plugin.AbstractMojo;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugin.descriptor.PluginDescriptor;
import org.apache.maven.plugin.logging.Log;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * What every Kiln goal shares: skip, fork or in-process, engine settings, and the translation of the worker's
 * events and exit code into Maven's log and exceptions. Subclasses only bind their configuration.
 */
public abstract class AbstractKilnMojo extends AbstractMojo {

    /** Skips every Kiln goal. */
    @Parameter(property = "kiln.skip", defaultValue = "false")
    private boolean skip;

    /**
     * Runs the work in a forked JVM (the default). {@code false} runs libtorch inside Maven's JVM: for debugging
     * only, since a native crash then kills Maven and only one plugin realm per JVM may ever load libtorch.
     */
    @Parameter(property = "kiln.fork", defaultValue = "true")
    private boolean fork;

    /** Extra JVM arguments for the forked worker, e.g. {@code -Xmx4g}. */
    @Parameter(property = "kiln.argLine")
    private String argLine;

    /** libtorch intra-op threads in the worker; 0 uses one per core. */
    @Parameter(property = "kiln.threads", defaultValue = "0")
    private int threads;

    /** Where the bundled libtorch natives are unpacked (about 430 MB); defaults to DJL's {@code ~/.djl.ai}. */
    @Parameter(property = "kiln.cacheDir")
    private File cacheDir;

    @Parameter(defaultValue = "${session}", readonly = true, required = true)
    private MavenSession session;

    @Parameter(defaultValue = "${plugin}", readonly = true, required = true)
    private PluginDescriptor plugin;

    @Parameter(defaultValue = "${project.build.directory}", readonly = true)
    private File buildDirectory;

    /** The worker goal this mojo runs. */
    protected abstract String workerGoal();

    /** The goal's configuration, validated as far as Maven can, as the worker will read it. */
    protected abstract ObjectNode configuration() throws MojoFailureException;

    /** Called with the worker's result data after a successful run (attach outputs, print summaries). */
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
    }

    /** A new, empty JSON object for {@link #configuration()}. */
    protected static ObjectNode newConfiguration() {
        return JsonNodeFactory.instance.objectNode();
    }

    @Override
    public final void execute() throws MojoExecutionException, MojoFailureException {
        if (skip) {
            getLog().info("Skipping kiln:" + workerGoal() + " because kiln.skip = true");
            return;
        }
        WorkerRequest request = new WorkerRequest(workerGoal(), configuration(), threads,
                cacheDir == null ? null : cacheDir.getAbsolutePath(), session != null && session.isOffline());
        EventSink sink = new LogSink(getLog());
        if (!fork) {
            getLog().warn("kiln.fork = false: running libtorch inside Maven's JVM (debugging only)");
            int code = Worker.run(request, sink, getClass().getClassLoader());
            if (code != Worker.EXIT_OK) {
                fail(code, ((LogSink) sink).lastError, code == Worker.EXIT_USER_ERROR, List.of());
            }
            onResult(((LogSink) sink).result);
            return;
        }
        WorkerLauncher.Outcome outcome;
        try {
            List<String> jvmArgs = argLine == null || argLine.isBlank() ? List.of()
                    : List.of(argLine.trim().split("\\s+"));
            Path workDir = (buildDirectory != null ? buildDirectory.toPath()
                    : Path.of(System.getProperty("java.io.tmpdir"))).resolve("kiln").resolve("worker");
            outcome = WorkerLauncher.launch(request, workerClassPath(),
                    new WorkerLauncher.Options(WorkerLauncher.Options.currentJava(), jvmArgs, Map.of(), workDir),
                    sink, line -> getLog().debug("[worker] " + line));
        } catch (IOException e) {
            throw new MojoExecutionException("could not start the Kiln worker: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MojoExecutionException("interrupted while the Kiln worker ran", e);
        }
        if (outcome.exitCode() != Worker.EXIT_OK) {
            fail(outcome.exitCode(), outcome.errorMessage(), outcome.userError(), outcome.stderrTail());
        }
        onResult(outcome.result());
    }

    /** User errors fail the build (BUILD FAILURE); anything else is an error of Kiln or the machine. */
    private void fail(int code, String message, boolean userError, List<String> stderrTail)
            throws MojoExecutionException, MojoFailureException {
        if (userError && message != null) {
            throw new MojoFailureException("kiln:" + workerGoal() + " failed: " + message);
        }
        StringBuilder text = new StringBuilder("kiln:" + workerGoal() + " worker ended with exit code " + code);
        if (message != null) {
            text.append(": ").append(message);
        }
        if (!stderrTail.isEmpty()) {
            text.append("\nlast lines of the worker's stderr:\n  ").append(String.join("\n  ", stderrTail));
        }
        throw new MojoExecutionException(text.toString());
    }

    /**
     * The plugin realm's jars (Kiln, DJL, the natives, and every jar the user listed under the plugin's
     * {@code <dependencies>}), plus the slf4j API jar that Maven filters out of plugin realms.
     */
    private List<Path> workerClassPath() throws MojoExecutionException {
        Set<Path> entries = new LinkedHashSet<>();
        ClassLoader realm = getClass().getClassLoader();
        if (!(realm instanceof URLClassLoader)) {
            throw new MojoExecutionException("cannot read the plugin class path from " + realm
                    + "; run with -Dkiln.fork=false");
        }
        for (URL url : ((URLClassLoader) realm).getURLs()) {
            try {
                entries.add(Path.of(url.toURI()));
            } catch (URISyntaxException | IllegalArgumentException e) {
                throw new MojoExecutionException("unreadable plugin class path entry " + url, e);
            }
        }
        // Maven exports these to plugins from its own loader, so they are missing from the realm's URLs.
        addExported(entries, "org.slf4j", "slf4j-api", org.slf4j.LoggerFactory.class);
        addExported(entries, "javax.inject", "javax.inject", javax.inject.Provider.class);
        return new ArrayList<>(entries);
    }

    /** Adds the jar of an artifact Maven keeps out of plugin realms: ours if resolved, else Maven's own copy. */
    private void addExported(Set<Path> entries, String groupId, String artifactId, Class<?> marker) {
        if (entries.stream().anyMatch(p -> p.getFileName().toString().startsWith(artifactId + "-"))) {
            return;
        }
        if (plugin != null && plugin.getArtifacts() != null) {
            for (Artifact artifact : plugin.getArtifacts()) {
                if (groupId.equals(artifact.getGroupId()) && artifactId.equals(artifact.getArtifactId())
                        && artifact.getFile() != null) {
                    entries.add(artifact.getFile().toPath());
                    return;
                }
            }
        }
        try {
            entries.add(Path.of(marker.getProtectionDomain().getCodeSource().getLocation().toURI()));
        } catch (URISyntaxException | RuntimeException e) {
            getLog().debug("no " + artifactId + " jar found for the worker: " + e);
        }
    }

    /** Shows the worker's events in the Maven log and remembers the result and the error. */
    private static final class LogSink implements EventSink {
        private final Log log;
        private Map<String, Object> result = Map.of();
        private String lastError;

        LogSink(Log log) {
            this.log = log;
        }

        @Override
        public void emit(Event event) {
            String message = event.message() == null ? "" : event.message();
            switch (String.valueOf(event.type())) {
                case "result":
                    result = event.data() == null ? Map.of() : event.data();
                    return;
                case "error":
                    lastError = message;
                    return;
                default:
                    break;
            }
            switch (String.valueOf(event.level())) {
                case "debug":
                    log.debug(message);
                    break;
                case "warn":
                    log.warn(message);
                    break;
                case "error":
                    log.error(message);
                    break;
                default:
                    log.info(message);
            }
        }
    }
}
