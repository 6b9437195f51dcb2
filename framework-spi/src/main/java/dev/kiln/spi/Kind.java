package dev.kiln.spi;

import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.compress.Compressor;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.skip.SkipPolicy;
import java.util.Locale;

/** The four extension points. Each kind names the operation type its techniques create. */
public enum Kind {
    /** Mixed-sample data augmentation, applied to training batches. */
    AUGMENT("augmentation", Augmentation.class),
    /** Merging several checkpoints into one, one tensor name at a time. */
    MERGE("merge method", MergeMethod.class),
    /** Deciding which layers, FFNs or experts run at inference or training time. */
    SKIP("skip policy", SkipPolicy.class),
    /** Turning one weight tensor into a smaller stored form plus its reconstruction. */
    COMPRESS("compressor", Compressor.class);

    private final String noun;
    private final Class<?> operationType;

    Kind(String noun, Class<?> operationType) {
        this.noun = noun;
        this.operationType = operationType;
    }

    /** The word used in messages: "unknown merge method 'tie'". */
    public String noun() {
        return noun;
    }

    /** The interface that {@link Technique#create} must return for this kind. */
    public Class<?> operationType() {
        return operationType;
    }

    /** The lower-case name used in configuration and reports ({@code augment}, {@code merge}, ...). */
    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses {@link #id()}; the error lists the valid names. */
    public static Kind fromId(String id) {
        for (Kind kind : values()) {
            if (kind.id().equalsIgnoreCase(id.trim())) {
                return kind;
            }
        }
        throw new KilnException("unknown technique kind '" + id + "'; valid kinds: augment, merge, skip, compress");
    }
}
