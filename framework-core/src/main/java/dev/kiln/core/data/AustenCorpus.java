package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Jane Austen's six novels read from the R package janeaustenr's lazy-load database ({@code Rdata.rdb}, fetched by
 * {@code scripts/fetch-austen.sh}), without R.
 *
 * <p>The file is a sequence of blobs, each a 4-byte big-endian uncompressed length followed by one zlib stream.
 * Each stream is an R XDR serialization ({@code X\n}, format version 2 or 3, then one character vector whose
 * elements are the novel's lines). A vector is named by its first non-empty line (the book's title as printed), so
 * the reader does not need the package's index file. Lines are joined with {@code \n}.
 *
 * @param novels text by title, in file order (e.g. {@code Emma}, {@code Persuasion})
 * @param source the file, for messages
 */
public record AustenCorpus(Map<String, String> novels, String source) {
    /** The six titles, as {@link #novel} accepts them. */
    public static final List<String> TITLES = List.of("Emma", "Mansfield Park", "Northanger Abbey", "Persuasion",
            "Pride and Prejudice", "Sense and Sensibility");

    private static final int STRSXP = 16;
    private static final int CHARSXP = 9;
    private static final int LATIN1_MASK = 1 << 2;
    private static final int MAX_BLOB = 64 << 20;

    /** Copies the map so the record is immutable. */
    public AustenCorpus {
        novels = Collections.unmodifiableMap(new LinkedHashMap<>(novels));
    }

    /** Reads {@code file}; a truncated or foreign file fails with a message naming it and the offset. */
    public static AustenCorpus read(Path file) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new KilnException("cannot read Austen corpus " + file + ": " + e.getMessage(), e);
        }
        return parse(bytes, file.toString());
    }

    /** Parses the bytes of an {@code Rdata.rdb}; {@code source} names it in messages. */
    public static AustenCorpus parse(byte[] bytes, String source) {
        Map<String, String> novels = new LinkedHashMap<>();
        int offset = 0;
        while (offset < bytes.length) {
            if (bytes.length - offset < 4) {
                throw new KilnException(source + ": truncated blob header at byte " + offset);
            }
            int expected = ByteBuffer.wrap(bytes, offset, 4).getInt();
            if (expected < 0 || expected > MAX_BLOB) {
                throw new KilnException(source + ": blob at byte " + offset + " declares length " + expected
                        + ", not an R lazy-load database");
            }
            Inflater inflater = new Inflater();
            byte[] raw = new byte[expected];
            int used;
            try {
                inflater.setInput(bytes, offset + 4, bytes.length - offset - 4);
                int got = 0;
                while (got < expected && !inflater.finished()) {
                    int n = inflater.inflate(raw, got, expected - got);
                    if (n == 0 && (inflater.needsInput() || inflater.needsDictionary())) {
                        break;
                    }
                    got += n;
                }
                if (got != expected || !inflater.finished()) {
                    throw new KilnException(source + ": blob at byte " + offset + " inflates to " + got
                            + " bytes, expected " + expected + (inflater.finished() ? "" : " (stream truncated)"));
                }
                used = (int) inflater.getBytesRead();
            } catch (DataFormatException e) {
                throw new KilnException(source + ": blob at byte " + offset + " is not a zlib stream: "
                        + e.getMessage(), e);
            } finally {
                inflater.end();
            }
            List<String> lines = strings(raw, source + " blob at byte " + offset);
            String title = title(lines);
            if (novels.containsKey(title)) {
                throw new KilnException(source + ": blob at byte " + offset + " repeats the title '" + title + "'");
            }
            novels.put(title, String.join("\n", lines));
            offset += 4 + used;
        }
        if (novels.isEmpty()) {
            throw new KilnException(source + ": no text found (empty file)");
        }
        return new AustenCorpus(novels, source);
    }

    /** The text of {@code title}; the message lists the titles present when it is missing. */
    public String novel(String title) {
        String text = novels.get(title);
        if (text == null) {
            throw new KilnException("Austen corpus " + source + " has no novel '" + title + "'; it has "
                    + novels.keySet());
        }
        return text;
    }

    /** The UTF-8 bytes of the given novels, joined with a blank line, for byte-level language models. */
    public byte[] bytes(List<String> titles) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < titles.size(); i++) {
            if (i > 0) {
                out.writeBytes("\n\n".getBytes(StandardCharsets.UTF_8));
            }
            out.writeBytes(novel(titles.get(i)).getBytes(StandardCharsets.UTF_8));
        }
        return out.toByteArray();
    }

    private static String title(List<String> lines) {
        for (String line : lines) {
            String t = line.strip();
            if (!t.isEmpty()) {
                for (String known : TITLES) {
                    if (known.toUpperCase(Locale.ROOT).equals(t.toUpperCase(Locale.ROOT))) {
                        return known;
                    }
                }
                return t;
            }
        }
        return "";
    }

    /** The elements of the character vector serialized in {@code raw}. */
    private static List<String> strings(byte[] raw, String where) {
        ByteBuffer in = ByteBuffer.wrap(raw);
        try {
            if (raw.length < 2 || raw[0] != 'X' || raw[1] != '\n') {
                throw new KilnException(where + ": not an R XDR serialization (expected 'X\\n' at its start)");
            }
            in.position(2);
            int version = in.getInt();
            in.getInt();
            in.getInt();
            if (version == 3) {
                int n = in.getInt();
                in.position(in.position() + n);
            } else if (version != 2) {
                throw new KilnException(where + ": R serialization version " + version + " is not supported (2 or 3)");
            }
            int flags = in.getInt();
            if ((flags & 0xFF) != STRSXP) {
                throw new KilnException(where + ": holds R type " + (flags & 0xFF)
                        + ", expected a character vector (type 16)");
            }
            int count = in.getInt();
            if (count < 0) {
                throw new KilnException(where + ": character vector length " + count + " is not supported");
            }
            List<String> lines = new ArrayList<>(Math.min(count, raw.length / 8));
            for (int i = 0; i < count; i++) {
                int cflags = in.getInt();
                if ((cflags & 0xFF) != CHARSXP) {
                    throw new KilnException(where + ": element " + i + " has R type " + (cflags & 0xFF)
                            + ", expected a string (type 9)");
                }
                int len = in.getInt();
                if (len == -1) {
                    lines.add("");
                    continue;
                }
                if (len < 0 || len > in.remaining()) {
                    throw new KilnException(where + ": element " + i + " declares length " + len + " with "
                            + in.remaining() + " bytes left");
                }
                int levels = cflags >>> 12;
                lines.add(new String(raw, in.position(), len,
                        (levels & LATIN1_MASK) != 0 ? StandardCharsets.ISO_8859_1 : StandardCharsets.UTF_8));
                in.position(in.position() + len);
            }
            return lines;
        } catch (java.nio.BufferUnderflowException | IllegalArgumentException e) {
            throw new KilnException(where + ": serialization ends early (" + raw.length + " bytes)", e);
        }
    }
}
