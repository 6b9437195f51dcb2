package dev.kiln.core.train;

import ai.djl.ndarray.NDManager;
import dev.kiln.core.data.Datasets;
import dev.kiln.core.data.ImageDataset;
import dev.kiln.core.data.LabeledData;
import java.nio.file.Path;
import java.util.Map;

/**
 * A training process for {@link KilledRunTest}: {@code straight OUT}, or {@code checkpointed DIR OUT [pause-ms]}
 * which checkpoints every epoch into DIR, pauses after each epoch (so the test can kill it), resumes from DIR when a
 * checkpoint is there, and writes the final model to OUT.
 */
public final class KilledRunChild {
    static final int EPOCHS = 3;

    private KilledRunChild() {
    }

    public static void main(String[] args) {
        LabeledData data = (LabeledData) Datasets.open(Path.of("..", "data", "fashion-mnist-mini"));
        ImageDataset train = data.train().shuffled(1).head(192);
        TrainingConfig.Builder builder = TrainingConfig.builder("cnn")
                .modelParameters(Map.of("width", "8", "hidden", "32")).batchSize(32).learningRate(0.05)
                .momentum(0.9).warmupSteps(5).seed(11).threads(1).epochs(EPOCHS);
        long pauseMillis = 0;
        Path out;
        if (args[0].equals("straight")) {
            out = Path.of(args[1]);
        } else {
            builder.checkpointDir(Path.of(args[1])).resume(true);
            out = Path.of(args[2]);
            pauseMillis = args.length > 3 ? Long.parseLong(args[3]) : 0;
        }
        long pause = pauseMillis;
        TrainingListener listener = new TrainingListener() {
            @Override
            public void onEpoch(EpochResult result) {
                System.out.println("epoch-done " + result.epoch());
                try {
                    Thread.sleep(pause);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        try (NDManager manager = NDManager.newBaseManager()) {
            TrainingResult result = new TrainingRun(builder.build(), train, null, listener).run(manager);
            TrainingRun.saveModel(result.model(), Map.of("test", "killed-run"), out);
        }
    }
}
