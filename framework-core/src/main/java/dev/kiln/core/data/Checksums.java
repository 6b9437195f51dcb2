package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/** SHA-256 of the files a dataset was read from, so every output can say exactly which data made it. */
public final class Checksums {
    private Checksums() {
    }

    /** Hex SHA-256 of one file's bytes (the same value {@code sha256sum} prints). */
    public static String sha256(Path file) {
        MessageDigest digest = newDigest();
        update(digest, file);
        return HexFormat.of().formatHex(digest.digest());
    }

    /**
     * Hex SHA-256 over several files: for each, in the given order, its name relative to {@code root}, a NUL, its
     * length and its bytes. Including the names means renaming a class folder changes the checksum, as it should,
     * since it changes the labels.
     */
    public static String sha256(Path root, List<Path> files) {
        MessageDigest digest = newDigest();
        for (Path file : files) {
            String name = root.relativize(file).toString().replace('\\', '/');
            digest.update(name.getBytes(StandardCharsets.UTF_8));
            digest.update((byte) 0);
            try {
                digest.update(Long.toString(Files.size(file)).getBytes(StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new KilnException("cannot read " + file + ": " + e.getMessage(), e);
            }
            update(digest, file);
        }
        return HexFormat.of().formatHex(digest.digest());
    }

    /** Hex SHA-256 of bytes. */
    public static String sha256(byte[] bytes) {
        return HexFormat.of().formatHex(newDigest().digest(bytes));
    }

    private static void update(MessageDigest digest, Path file) {
        byte[] buffer = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(file)) {
            int n;
            while ((n = in.read(buffer)) > 0) {
                digest.update(buffer, 0, n);
            }
        } catch (IOException e) {
            throw new KilnException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    private static MessageDigest newDigest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK lacks SHA-256", e);
        }
    }
}
