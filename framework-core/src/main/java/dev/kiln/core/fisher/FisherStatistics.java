package dev.kiln.core.fisher;

import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.DataSource;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import dev.kiln.core.merge.MergeSpec;
import dev.kiln.core.worker.Event;
import dev.kiln.core.worker.EventSink;
import dev.kiln.spi.KilnException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Attaches per-model Fisher statistics to a merge's inputs: an explicit file per model wins; otherwise, for the
 * {@code fisher} method (or whenever a Fisher dataset is given), {@code <stem>.fisher.safetensors} beside the
 * checkpoint. With a dataset, missing or stale Fisher files are computed first, so a pom needs only the method and
 * the dataset.
 */
public final class FisherStatistics {
    /** The merge method that needs a Fisher per model. */
    public static final String FISHER_METHOD = "fisher";

    private FisherStatistics() {
    }

    /**
     * Returns {@code models} with their statistic files resolved (and computed where {@code dataset} is set).
     *
     * @param methodId the merge method
     * @param models the merge inputs, with explicit statistics where configured
     * @param dataset a labelled dataset (its training split is used) to compute Fishers from, or null to only use
     *     existing files
     * @param settings the estimator's settings
     * @param startEngine starts the engine; called once, only when a Fisher must be computed
     * @param events progress lines
     * @throws KilnException when the method needs a Fisher that neither exists nor can be computed, naming the model
     *     and the expected file
     */
    public static List<MergeSpec.ModelInput> resolve(String methodId, List<MergeSpec.ModelInput> models, Path dataset,
            FisherEstimator.Settings settings, Runnable startEngine, EventSink events) {
        boolean fisher = FISHER_METHOD.equals(methodId);
        if (!fisher && dataset == null) {
            return models;
        }
        EventSink sink = events == null ? e -> { } : events;
        List<MergeSpec.ModelInput> out = new ArrayList<>();
        ImageDataset data = null;
        boolean started = false;
        for (int i = 0; i < models.size(); i++) {
            MergeSpec.ModelInput m = models.get(i);
            Path file = m.statistic() != null ? m.statistic() : FisherEstimator.fisherFile(m.path());
            if (dataset != null) {
                if (data == null) {
                    data = trainingSplit(dataset);
                }
                if (FisherEstimator.isUpToDate(file, m.path(), data, settings)) {
                    sink.emit(Event.info("Fisher of model " + (i + 1) + " is up to date: " + file));
                } else {
                    if (!started) {
                        startEngine.run();
                        started = true;
                    }
                    long t0 = System.nanoTime();
                    try (NDManager manager = NDManager.newBaseManager()) {
                        FisherEstimator.compute(m.path(), data, settings, file, manager);
                    }
                    sink.emit(Event.info(String.format("Computed the %s Fisher of model %d on %d samples in %.1f s: %s",
                            settings.mode().id(), i + 1, Math.min(settings.samples(), data.size()),
                            (System.nanoTime() - t0) / 1e9, file)));
                }
            } else if (!Files.isRegularFile(file) && !Files.isDirectory(file)) {
                throw new KilnException("merge method 'fisher' needs a Fisher statistic for model " + (i + 1) + " ("
                        + m.path() + "), but " + file + " does not exist; set <fisher> on the model, or set"
                        + " <fisherDataset> to compute it");
            }
            out.add(m.withStatistic(file));
        }
        return out;
    }

    private static ImageDataset trainingSplit(Path dataset) {
        DataSource source = Datasets.open(dataset);
        if (!(source instanceof LabeledData data)) {
            throw new KilnException("Fisher dataset " + dataset + " is a text corpus; the Fisher of a classifier needs"
                    + " labelled images (an IDX folder, an image folder or a CSV file)");
        }
        return data.train();
    }
}
