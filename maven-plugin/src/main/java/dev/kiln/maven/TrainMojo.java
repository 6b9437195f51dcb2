package dev.kiln.maven;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.maven.plugin.MojoExecutionException;
import org.apache.maven.plugin.MojoFailureException;
import org.apache.maven.plugins.annotations.LifecyclePhase;
import org.apache.maven.plugins.annotations.Mojo;
import org.apache.maven.plugins.annotations.Parameter;

/**
 * Trains a model from the zoo on a dataset, with mixed-sample augmentations, and writes the checkpoint
 * (safetensors) and its model card (JSON). A second run with the same inputs is skipped as up to date.
 */
@Mojo(name = "train", defaultPhase = LifecyclePhase.PROCESS_CLASSES, threadSafe = true)
public class TrainMojo extends AbstractOutputMojo {

    /**
     * Model id: {@code mlp}, {@code cnn} or {@code resnet} (classifiers, trained for epochs on images), or
     * {@code decoder-lm} (a byte-level transformer trained for steps on a UTF-8 text file).
     */
    @Parameter(property = "kiln.model", defaultValue = "cnn")
    private String model;

    /** The model's parameters (see the technique reference for each model's names and defaults). */
    @Parameter
    private Map<String, String> modelParams;

    /** The data: an IDX folder (Fashion-MNIST layout), a folder of class subfolders of images, or a CSV file. */
    @Parameter(property = "kiln.dataset", required = true)
    private File dataset;

    /** Passes over the training data. */
    @Parameter(property = "kiln.epochs", defaultValue = "10")
    private int epochs;

    /** Optimisation steps of a {@code decoder-lm} (classifiers use {@code epochs}). */
    @Parameter(property = "kiln.steps", defaultValue = "1000")
    private int steps;

    /** Bytes per training sequence of a {@code decoder-lm}. */
    @Parameter(property = "kiln.seqLength", defaultValue = "128")
    private int seqLength;

    /**
     * A training-time skip policy for a {@code decoder-lm}, e.g. {@code layerdrop}, which makes the model robust to
     * skipping layers at inference.
     */
    @Parameter
    private TechniqueConfig skip;

    /** Samples per optimisation step; by default 64 for classifiers, 16 sequences for a {@code decoder-lm}. */
    @Parameter(property = "kiln.batchSize")
    private Integer batchSize;

    /** {@code sgd} (with momentum) or {@code adamw}. */
    @Parameter(property = "kiln.optimizer", defaultValue = "sgd")
    private String optimizer;

    /**
     * Peak learning rate of the cosine schedule; by default 0.05 (SGD) for classifiers, 0.001 (AdamW) for a
     * {@code decoder-lm}.
     */
    @Parameter(property = "kiln.learningRate")
    private Double learningRate;

    /** Steps of linear warm-up before the cosine decay. */
    @Parameter(property = "kiln.warmupSteps", defaultValue = "0")
    private int warmupSteps;

    /** SGD momentum. */
    @Parameter(property = "kiln.momentum", defaultValue = "0.9")
    private double momentum;

    /** Weight decay (L2 for SGD, decoupled for AdamW). */
    @Parameter(property = "kiln.weightDecay", defaultValue = "0.0005")
    private double weightDecay;

    /** Seeds initialisation, shuffling and augmentation: the same seed on one thread gives the same checkpoint. */
    @Parameter(property = "kiln.seed", defaultValue = "42")
    private long seed;

    /**
     * The loss: {@code cross-entropy} (softmax against the soft targets) or {@code bce} (binary cross-entropy per
     * class, the ResNet Strikes Back recipe with mixup and CutMix).
     */
    @Parameter(property = "kiln.loss", defaultValue = "cross-entropy")
    private String loss;

    /** With {@code bce}: binarise the mixed targets above this value (timm's target_threshold); negative keeps them. */
    @Parameter(property = "kiln.bceThreshold", defaultValue = "-1")
    private double bceThreshold;

    /** Mixed-sample augmentations; with several, one is picked per batch. */
    @Parameter
    private List<TechniqueConfig> augment;

    /** The checkpoint to write; the model card is written beside it as {@code <name>.card.json}. */
    @Parameter(property = "kiln.output", defaultValue = "${project.build.directory}/kiln/model.safetensors")
    private File output;

    /** Continue an interrupted run from its last epoch checkpoint. */
    @Parameter(property = "kiln.resume", defaultValue = "false")
    private boolean resume;

    /** Classifier of the attached checkpoint. */
    @Parameter(defaultValue = "${project.execution.id}")
    private String classifier;

    @Override
    protected String workerGoal() {
        return "train";
    }

    @Override
    protected ObjectNode configuration() throws MojoFailureException {
        if (dataset == null) {
            throw new MojoFailureException("<dataset> is required: an IDX folder, an image folder or a CSV file");
        }
        ObjectNode config = newConfiguration();
        config.put("model", model);
        ObjectNode params = config.putObject("modelParams");
        if (modelParams != null) {
            modelParams.forEach(params::put);
        }
        config.put("dataset", dataset.getAbsolutePath());
        config.put("epochs", epochs);
        if (batchSize != null) {
            config.put("batchSize", batchSize);
        }
        config.put("optimizer", optimizer);
        if (learningRate != null) {
            config.put("learningRate", learningRate);
        }
        config.put("warmupSteps", warmupSteps);
        config.put("momentum", momentum);
        config.put("weightDecay", weightDecay);
        config.put("seed", seed);
        config.put("loss", loss);
        config.put("steps", steps);
        config.put("seqLength", seqLength);
        if (skip != null && skip.getId() != null && !skip.getId().isBlank()) {
            ObjectNode policy = config.putObject("skip");
            policy.put("id", skip.getId().trim());
            ObjectNode values = policy.putObject("params");
            skip.getParams().forEach(values::put);
        }
        config.put("bceThreshold", bceThreshold);
        ArrayNode techniques = config.putArray("augment");
        for (TechniqueConfig technique : augment == null ? new ArrayList<TechniqueConfig>() : augment) {
            if (technique.getId() == null || technique.getId().isBlank()) {
                throw new MojoFailureException("every <augment><technique> needs an <id>; see mvn kiln:list");
            }
            ObjectNode entry = techniques.addObject();
            entry.put("id", technique.getId().trim());
            ObjectNode values = entry.putObject("params");
            technique.getParams().forEach(values::put);
        }
        config.put("output", output.getAbsolutePath());
        config.put("resume", resume);
        config.put("force", force());
        return config;
    }

    @Override
    protected void onResult(Map<String, Object> result) throws MojoExecutionException {
        String suffix = classifier == null || classifier.isBlank() || classifier.startsWith("default")
                ? "model" : classifier;
        attach(result.get("output"), "safetensors", suffix);
        attach(result.get("modelCard"), "json", suffix + "-card");
    }
}
