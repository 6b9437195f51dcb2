package dev.kiln.core.train;

/** Receives progress from a {@link TrainingRun}, e.g. to print the worker's progress events. */
public interface TrainingListener {

    /** After every optimisation step. */
    default void onStep(StepProgress progress) {
    }

    /** After every epoch, once evaluated and checkpointed. */
    default void onEpoch(EpochResult result) {
    }

    /**
     * One step's numbers.
     *
     * @param epoch current epoch, from 0
     * @param epochs epochs in the run
     * @param step global step, from 0
     * @param totalSteps steps in the run
     * @param loss this batch's loss
     * @param accuracy this batch's accuracy against the (argmax of the) targets
     * @param learningRate the rate used for this step
     * @param samplesPerSecond training throughput since the epoch started
     * @param etaSeconds estimated seconds until the run ends
     */
    record StepProgress(int epoch, int epochs, long step, long totalSteps, double loss, double accuracy,
            double learningRate, double samplesPerSecond, double etaSeconds) {
    }

    /**
     * One epoch's numbers.
     *
     * @param epoch the epoch just finished, from 0
     * @param trainLoss mean training loss over the epoch
     * @param trainAccuracy training accuracy over the epoch (against argmax targets when mixing)
     * @param evalLoss loss on the evaluation data, NaN without it
     * @param evalAccuracy accuracy on the evaluation data, NaN without it
     * @param seconds wall time of the epoch
     */
    record EpochResult(int epoch, double trainLoss, double trainAccuracy, double evalLoss, double evalAccuracy,
            double seconds) {
    }
}
