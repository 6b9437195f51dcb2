package dev.kiln.core.train;

import dev.kiln.core.data.Normalization;
import dev.kiln.core.model.KilnModel;
import java.util.List;
import java.util.Map;

/**
 * What a finished {@link TrainingRun} produced.
 *
 * @param model the trained model, its parameters in the manager the run was given
 * @param history one entry per epoch run in this process (resumed epochs are not repeated)
 * @param normalization the input statistics the model expects, or null when inputs were not normalised
 * @param metadata what the run records in every file it writes (model, data checksum, seed, ...)
 * @param startEpoch the epoch this process started at: 0, or the number of epochs restored from a checkpoint
 */
public record TrainingResult(KilnModel model, List<TrainingListener.EpochResult> history, Normalization normalization,
        Map<String, String> metadata, int startEpoch) {

    public TrainingResult {
        history = List.copyOf(history);
        metadata = Map.copyOf(metadata);
    }

    /** The last epoch's evaluation accuracy, NaN when nothing was evaluated. */
    public double finalAccuracy() {
        return history.isEmpty() ? Double.NaN : history.get(history.size() - 1).evalAccuracy();
    }
}
