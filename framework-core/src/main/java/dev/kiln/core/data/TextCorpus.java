package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * A UTF-8 text file as a byte sequence for byte-level language models: every byte is a token (vocabulary 256). The
 * validation part is the contiguous tail of the file, so no sentence straddles the split.
 *
 * @param train the training bytes
 * @param validation the validation bytes
 * @param sha256 hex SHA-256 of the file
 * @param source the file, for messages
 */
public record TextCorpus(byte[] train, byte[] validation, String sha256, String source) implements DataSource {
    /** Number of distinct tokens a byte-level model needs. */
    public static final int VOCABULARY = 256;

    /** Reads {@code file}, which must be valid UTF-8, keeping the last {@code validationFraction} for validation. */
    public static TextCorpus read(Path file, double validationFraction) {
        if (!(validationFraction >= 0 && validationFraction < 1)) {
            throw new KilnException("validation fraction must be in [0, 1), got " + validationFraction);
        }
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new KilnException("cannot read text file " + file + ": " + e.getMessage(), e);
        }
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes));
        } catch (CharacterCodingException e) {
            throw new KilnException(file + " is not valid UTF-8: " + e.getMessage(), e);
        }
        int cut = bytes.length - (int) Math.round(bytes.length * validationFraction);
        return new TextCorpus(Arrays.copyOfRange(bytes, 0, cut), Arrays.copyOfRange(bytes, cut, bytes.length),
                Checksums.sha256(bytes), file.toString());
    }
}
