package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.util.List;
import java.util.Map;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugins.annotations.LifecyclePhase;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Makes a sparse model soup (Zimmer, Spiegel and Pokutta, ICLR 2024) from a trained checkpoint: prunes it by
 * magnitude, fine-tunes ingredients copies under the shared mask (different seeds, and optionally different
 * augmentations), averages them, and repeats for rounds rounds up to the target sparsity; the soup keeps exactly the
 * mask's zeros. Writes the soup (an ordinary checkpoint) and a JSON report (.report.json: every round's ingredient
 * and soup test accuracies, the sparsity counted on the written weights). Skipped when up to date.
 */
@Mojo(name = "soup", defaultPhase = LifecyclePhase.PACKAGE, threadSafe = true)
public class SoupMojo extends AbstractOutputMojo {

    /** The trained checkpoint to prune (as written by {@code kiln:train}; not a compressed one). */
    @Parameter(property = "kiln.checkpoint", defaultValue = "${project.build.directory}/kiln/model.safetensors")
    private File checkpoint;

    /** Labelled data: the ingredients fine-tune on its training split; its test split, if any, scores them. */
    @Parameter(property = "kiln.dataset", required = true)
    private File dataset;

    /** The soup to write; the report goes beside it. */
    @Parameter(property = "kiln.soup", defaultValue = "${project.build.directory}/kiln/model-soup.safetensors")
    private File output;

    /** Final fraction of prunable weights (conv and Linear weights) set to zero, in [0, 1). */
    @Parameter(required = true)
    private Double sparsity;

    /** One magnitude threshold across all prunable tensors instead of one per tensor. */
    @Parameter(defaultValue = "false")
    private boolean global;

    /** Fine-tuned copies averaged per round. */
    @Parameter(defaultValue = "3")
    private int ingredients;

    /** Prune-fine-tune-average rounds; round r prunes to sparsity * r / rounds. */
    @Parameter(defaultValue = "1")
    private int rounds;

    /** Fine-tuning epochs of each ingredient in each round. */
    @Parameter(defaultValue = "1")
    private int epochs;

    /** Samples per fine-tuning step. */
    @Parameter(defaultValue = "64")
    private int batchSize;

    /** {@code sgd} (with momentum) or {@code adamw}. */
    @Parameter(defaultValue = "sgd")
    private String optimizer;

    /** Peak learning rate of each ingredient's cosine schedule. */
    @Parameter(defaultValue = "0.01")
    private double learningRate;

    /** Steps of linear warm-up before the cosine decay. */
    @Parameter(defaultValue = "0")
    private int warmupSteps;

    /** SGD momentum. */
    @Parameter(defaultValue = "0.9")
    private double momentum;

    /** Weight decay (L2 for SGD, decoupled for AdamW). */
    @Parameter(defaultValue = "0.0005")
    private double weightDecay;

    /** Base seed: ingredient i of round r fine-tunes with seed + 1000 r + i, so batch orders differ. */
    @Parameter(defaultValue = "42")
    private long seed;

    /** {@code cross-entropy} or {@code bce}, as in {@code kiln:train}. */
    @Parameter(defaultValue = "cross-entropy")
    private String loss;

    /** With {@code bce}: binarise the mixed targets above this value; negative keeps them. */
    @Parameter(defaultValue = "-1")
    private double bceThreshold;

    /** Mixed-sample augmentations for fine-tuning; with several, one is picked per batch. */
    @Parameter
    private List<TechniqueConfig> augment;

    /**
     * Give each ingredient one augmentation of {@code augment} (ingredient i gets number i mod count) instead of
     * all of them, so the ingredients differ in augmentation as well as seed.
     */
    @Parameter(defaultValue = "false")
    private boolean augmentPerIngredient;

    /** Classifier of the attached checkpoint. */
    @Parameter(defaultValue = "soup")
    private String classifier;

    @Override
    protected String workerGoal() {
        return "soup";
    }

    @Override
    protected ObjectNode configuration() throws MojoFailureException {
        if (dataset == null) {
            throw new MojoFailureException("<dataset> is required: the ingredients are fine-tuned on its training"
                    + " split");
        }
        if (sparsity == null) {
            throw new MojoFailureException("<sparsity> is required: the fraction of prunable weights to zero, in"
                    + " [0, 1)");
        }
        ObjectNode config = newConfiguration();
        config.put("checkpoint", checkpoint.getAbsolutePath());
        config.put("dataset", dataset.getAbsolutePath());
        config.put("output", output.getAbsolutePath());
        config.put("sparsity", sparsity);
        config.put("global", global);
        config.put("ingredients", ingredients);
        config.put("rounds", rounds);
        config.put("epochs", epochs);
        config.put("batchSize", batchSize);
        config.put("optimizer", optimizer);
        config.put("learningRate", learningRate);
        config.put("warmupSteps", warmupSteps);
        config.put("momentum", momentum);
        config.put("weightDecay", weightDecay);
        config.put("seed", seed);
        config.put("loss", loss);
        config.put("bceThreshold", bceThreshold);
        ArrayNode techniques = config.putArray("augment");
        for (TechniqueConfig technique : augment == null ? List.<TechniqueConfig>of() : augment) {
            if (technique.getId() == null || technique.getId().isBlank()) {
                throw new MojoFailureException("every <augment><technique> needs an <id>; see mvn kiln:list");
            }
            ObjectNode entry = techniques.addObject();
            entry.put("id", technique.getId().trim());
            ObjectNode values = entry.putObject("params");
            technique.getParams().forEach(values::put);
        }
        config.put("augmentPerIngredient", augmentPerIngredient);
        config.put("force", force());
        return config;
    }

    @Override
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
        Object accuracy = result.get("soupAccuracy");
        Object zeros = result.get("soupSparsity");
        getLog().info("Soup sparsity " + zeros + (accuracy == null ? "" : ", test accuracy " + accuracy));
        String suffix = classifier == null || classifier.isBlank() ? "soup" : classifier;
        attach(result.get("output"), "safetensors", suffix);
        attach(result.get("report"), "json", suffix + "-report");
    }
}
