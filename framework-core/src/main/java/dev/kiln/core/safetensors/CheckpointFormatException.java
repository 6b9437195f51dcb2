package dev.kiln.core.safetensors;

import dev.kiln.spi.KilnException;
import java.nio.file.Path;

/**
 * A checkpoint file (safetensors or its shard index) that Kiln refuses to read, or a write request that cannot produce
 * a valid one. The message always names the file and, where one is at fault, the tensor.
 */
public class CheckpointFormatException extends KilnException {
    private static final long serialVersionUID = 1L;

    private final transient Path file;
    private final String tensor;

    /** A problem with the file as a whole. */
    public CheckpointFormatException(Path file, String problem) {
        this(file, null, problem, null);
    }

    /** A problem with one tensor of the file. */
    public CheckpointFormatException(Path file, String tensor, String problem) {
        this(file, tensor, problem, null);
    }

    /** A problem with one tensor (or the whole file when {@code tensor} is null) caused by {@code cause}. */
    public CheckpointFormatException(Path file, String tensor, String problem, Throwable cause) {
        super(message(file, tensor, problem), cause);
        this.file = file;
        this.tensor = tensor;
    }

    /** The file at fault. */
    public Path file() {
        return file;
    }

    /** The tensor at fault, or null when the problem concerns the whole file. */
    public String tensor() {
        return tensor;
    }

    private static String message(Path file, String tensor, String problem) {
        StringBuilder sb = new StringBuilder("Checkpoint ").append(file);
        if (tensor != null) {
            sb.append(", tensor '").append(tensor).append('\'');
        }
        return sb.append(": ").append(problem).toString();
    }
}
