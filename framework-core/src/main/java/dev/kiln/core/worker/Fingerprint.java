package dev.kiln.core.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * The up-to-date key of a goal's output: a SHA-256 over the goal's normalised configuration, the checksums of its
 * inputs and the Kiln version. Maven has no task cache, so each goal compares this key with the one stored beside
 * its output and skips the work when they match.
 */
public final class Fingerprint {
    private Fingerprint() {
    }

    /** The key for {@code config} (keys sorted, so pom order does not matter) and the given input checksums. */
    public static String of(JsonNode config, String... inputChecksums) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            byte[] canonical = Json.MAPPER.copy().configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
                    .writeValueAsBytes(Json.MAPPER.treeToValue(config, Object.class));
            digest.update(canonical);
            for (String checksum : inputChecksums) {
                digest.update((byte) 0);
                digest.update(checksum.getBytes(StandardCharsets.UTF_8));
            }
            digest.update((byte) 0);
            digest.update(KilnVersion.get().getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest.digest());
        } catch (NoSuchAlgorithmException | JsonProcessingException e) {
            throw new IllegalStateException("cannot fingerprint the configuration", e);
        }
    }
}
