package dev.kiln.core.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

/**
 * The up-to-date key of a goal's output: a SHA-256 over the goal's normalised configuration, the checksums of its
 * inputs and the Kiln version. Maven has no task cache, so each goal compares this key with the one stored beside
 * its output and skips the work when they match.
 */
public final class Fingerprint {
    private Fingerprint() {
    }

    /** Settings that say how to run, not what to produce: they never make an output stale. */
    private static final List<String> RUN_CONTROLS = List.of("force", "resume");

    /**
     * The key for {@code config} (keys sorted, so pom order does not matter; {@code force} and {@code resume}
     * left out) and the given input checksums.
     */
    public static String of(JsonNode config, String... inputChecksums) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            ObjectNode keyed = config.deepCopy();
            keyed.remove(RUN_CONTROLS);
            byte[] canonical = Json.MAPPER.copy().configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
                    .writeValueAsBytes(Json.MAPPER.treeToValue(keyed, Object.class));
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

    /**
     * A cheap identity of input files for {@link #of}: path, size and modification time of each file (each regular
     * file directly inside a folder), for inputs too large to hash on every build (multi-GB checkpoints).
     */
    public static String fileStamps(List<Path> inputs) throws IOException {
        StringBuilder text = new StringBuilder();
        for (Path input : inputs) {
            List<Path> files = new ArrayList<>();
            if (Files.isDirectory(input)) {
                try (Stream<Path> list = Files.list(input)) {
                    list.filter(Files::isRegularFile).sorted().forEach(files::add);
                }
            } else {
                files.add(input);
            }
            for (Path f : files) {
                text.append(f.toAbsolutePath()).append(' ');
                text.append(Files.exists(f) ? Files.size(f) + " " + Files.getLastModifiedTime(f).toMillis() : "missing");
                text.append('\n');
            }
        }
        return text.toString();
    }

    /**
     * Whether a goal's earlier result is still valid: {@code output} and its JSON record (model card or report) both
     * exist and the record's {@code fingerprint} equals {@code fingerprint}. An unreadable record means "not up to
     * date", so the goal simply runs again.
     */
    public static boolean matches(Path output, Path record, String fingerprint) {
        if (!Files.isRegularFile(output) || !Files.isRegularFile(record)) {
            return false;
        }
        try {
            return fingerprint.equals(Json.MAPPER.readTree(record.toFile()).path("fingerprint").asText());
        } catch (IOException e) {
            return false;
        }
    }
}
