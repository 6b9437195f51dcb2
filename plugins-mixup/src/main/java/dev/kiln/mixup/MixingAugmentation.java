package dev.kiln.mixup;

import ai.djl.engine.EngineException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.LossTerm;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Objects;

/**
 * The frame every technique in this jar shares: validation, early stopping ({@code stop-epoch}), and memory scoping.
 *
 * <p>Each call works in a sub-manager of the inputs' manager, so the temporaries of one batch (partners, masks,
 * spectra) are freed when the call returns instead of piling up in the trainer's manager; only the outputs are
 * attached back to the caller's manager. The inputs are borrowed with {@code tempAttach}, which hands them back
 * untouched when the scope closes.
 */
abstract class MixingAugmentation implements Augmentation {

    /** Result of the technique-specific part, still living in the call's scope. */
    record Mixed(NDArray inputs, NDArray targets, LossTerm extraLoss) {
        Mixed(NDArray inputs, NDArray targets) {
            this(inputs, targets, null);
        }
    }

    final String id;
    final double smoothing;
    final int stopEpoch;
    private final boolean needsImages;

    MixingAugmentation(String id, double smoothing, int stopEpoch, boolean needsImages) {
        this.id = id;
        this.smoothing = smoothing;
        this.stopEpoch = stopEpoch;
        this.needsImages = needsImages;
    }

    @Override
    public final MixedBatch mix(Batch batch, MixContext context) {
        Objects.requireNonNull(context, "context");
        Mixing.validate(id, batch, needsImages);
        NDArray inputs = batch.inputs();
        NDArray labels = batch.labels();
        NDManager inputsManager = inputs.getManager();
        NDManager labelsManager = labels.getManager();
        try (NDManager scope = inputsManager.newSubManager()) {
            inputs.tempAttach(scope);
            labels.tempAttach(scope);
            Mixed mixed;
            try {
                if (stopEpoch >= 0 && context.epoch() >= stopEpoch) {
                    // Early-stopped mixup (Zou et al. 2023): plain ERM from here on, targets still smoothed.
                    mixed = new Mixed(inputs.duplicate(), Mixing.smoothedTargets(batch, smoothing));
                } else {
                    mixed = mix(batch, context, scope);
                }
            } catch (EngineException e) {
                KilnException outOfRange = Mixing.labelRangeError(id, batch);
                throw outOfRange != null ? outOfRange : e;
            }
            mixed.inputs().attach(inputsManager);
            mixed.targets().attach(labelsManager);
            return new MixedBatch(mixed.inputs(), mixed.targets(), mixed.extraLoss());
        }
    }

    /** Mixes a validated batch; every array created here belongs to {@code scope} unless attached elsewhere. */
    abstract Mixed mix(Batch batch, MixContext context, NDManager scope);

    /** The batch unchanged, with smoothed targets: what a gate that decided not to mix returns. */
    Mixed unmixed(Batch batch) {
        return new Mixed(batch.inputs().duplicate(), Mixing.smoothedTargets(batch, smoothing));
    }

    @Override
    public String toString() {
        return id;
    }
}
