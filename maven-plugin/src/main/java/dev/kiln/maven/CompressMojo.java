package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.util.Map;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugins.annotations.LifecyclePhase;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Compresses a trained checkpoint with one compressor ({@code int8}, {@code magnitude}, {@code nm},
 * {@code structured}, {@code low-rank}, {@code low-rank-sparse} or a third-party one) and writes the compressed
 * checkpoint plus a JSON report ({@code <name>.report.json}: bytes before and after, per-tensor relative error,
 * density, and with a {@code dataset} the test accuracy, samples/s and latency before and after, measured in one
 * benchmark run). Skipped when up to date.
 */
@Mojo(name = "compress", defaultPhase = LifecyclePhase.PACKAGE, threadSafe = true)
public class CompressMojo extends AbstractOutputMojo {

    /** The trained checkpoint to compress (as written by {@code kiln:train}). */
    @Parameter(property = "kiln.checkpoint", defaultValue = "${project.build.directory}/kiln/model.safetensors")
    private File checkpoint;

    /** The compressor: {@code <compressor><id>int8</id><params>...</params></compressor>}; see {@code kiln:list}. */
    @Parameter(required = true)
    private TechniqueConfig compressor;

    /** The compressed checkpoint to write; the report goes beside it. */
    @Parameter(property = "kiln.compressed",
            defaultValue = "${project.build.directory}/kiln/model-compressed.safetensors")
    private File output;

    /** Optional labelled data: accuracy and speed are measured on its test split before and after compression. */
    @Parameter(property = "kiln.dataset")
    private File dataset;

    /** Evaluation batch size. */
    @Parameter(property = "kiln.batchSize", defaultValue = "256")
    private int batchSize;

    /** Classifier of the attached checkpoint. */
    @Parameter(defaultValue = "compressed")
    private String classifier;

    @Override
    protected String workerGoal() {
        return "compress";
    }

    @Override
    protected ObjectNode configuration() throws MojoFailureException {
        if (compressor == null || compressor.getId() == null || compressor.getId().isBlank()) {
            throw new MojoFailureException("<compressor><id> is required (int8, magnitude, nm, structured, low-rank,"
                    + " low-rank-sparse; see mvn kiln:list)");
        }
        if (checkpoint == null) {
            throw new MojoFailureException("<checkpoint> is required: the model.safetensors written by kiln:train");
        }
        ObjectNode config = newConfiguration();
        config.put("checkpoint", checkpoint.getAbsolutePath());
        ObjectNode entry = config.putObject("compressor");
        entry.put("id", compressor.getId().trim());
        ObjectNode values = entry.putObject("params");
        compressor.getParams().forEach(values::put);
        config.put("output", output.getAbsolutePath());
        if (dataset != null) {
            config.put("dataset", dataset.getAbsolutePath());
        }
        config.put("batchSize", batchSize);
        config.put("force", force());
        return config;
    }

    @Override
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
        Object before = result.get("accuracyBefore");
        Object after = result.get("accuracyAfter");
        if (before != null && after != null) {
            getLog().info("Test accuracy before " + before + ", after " + after
                    + (result.get("speedup") == null ? "" : "; speedup " + result.get("speedup")));
        }
        String suffix = classifier == null || classifier.isBlank() ? "compressed" : classifier;
        attach(result.get("output"), "safetensors", suffix);
        attach(result.get("report"), "json", suffix + "-report");
    }
}
