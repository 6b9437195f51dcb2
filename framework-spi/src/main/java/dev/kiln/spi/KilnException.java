package dev.kiln.spi;

/**
 * An error the user can fix: a bad id, a bad parameter value, a malformed input file, a missed quality bar.
 *
 * <p>Its message is shown to the user as it is, so it names the file, tensor, technique or parameter at fault. Kiln
 * maps it to a build failure (exit code 1 of the worker), whereas any other exception is an internal error.
 */
public class KilnException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public KilnException(String message) {
        super(message);
    }

    public KilnException(String message, Throwable cause) {
        super(message, cause);
    }
}
