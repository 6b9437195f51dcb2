package dev.kiln.core.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.KilnException;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.zip.Deflater;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AustenCorpusTest {

    /** A minimal R XDR serialization (version 3) of a character vector; null elements are NA. */
    static byte[] strsxp(int version, int charFlags, String... lines) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        out.writeBytes("X\n");
        out.writeInt(version);
        out.writeInt(0x040201);
        out.writeInt(0x030500);
        if (version == 3) {
            out.writeInt(5);
            out.writeBytes("UTF-8");
        }
        out.writeInt(16);
        out.writeInt(lines.length);
        for (String line : lines) {
            out.writeInt(charFlags);
            if (line == null) {
                out.writeInt(-1);
            } else {
                byte[] b = line.getBytes(charFlags == 0x00040009 || (charFlags >>> 12 & 4) == 0
                        ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
                out.writeInt(b.length);
                out.write(b);
            }
        }
        return bytes.toByteArray();
    }

    /** One lazy-load blob: big-endian uncompressed length, then the zlib stream. */
    static byte[] blob(byte[] raw) throws IOException {
        Deflater deflater = new Deflater();
        deflater.setInput(raw);
        deflater.finish();
        byte[] buf = new byte[raw.length + 64];
        int n = deflater.deflate(buf);
        deflater.end();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        out.writeInt(raw.length);
        out.write(buf, 0, n);
        return bytes.toByteArray();
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    @Test
    void readsNovelsByPrintedTitle(@TempDir Path dir) throws IOException {
        byte[] rdb = concat(
                blob(strsxp(3, 0x00040009, "EMMA", "", "CHAPTER I", "Emma Woodhouse, handsome")),
                blob(strsxp(2, 0x00040009, "", "Persuasion", null, "Sir Walter Elliot")),
                blob(strsxp(3, 0x00008009, "Mystery", "caf\u00e9 cr\u00e8me")));
        Path file = dir.resolve("Rdata.rdb");
        Files.write(file, rdb);
        AustenCorpus corpus = AustenCorpus.read(file);
        assertEquals(List.of("Emma", "Persuasion", "Mystery"), List.copyOf(corpus.novels().keySet()));
        assertEquals("EMMA\n\nCHAPTER I\nEmma Woodhouse, handsome", corpus.novel("Emma"));
        assertEquals("\nPersuasion\n\nSir Walter Elliot", corpus.novel("Persuasion"));
        assertEquals("Mystery\ncaf\u00e9 cr\u00e8me", corpus.novel("Mystery"));
        byte[] joined = corpus.bytes(List.of("Persuasion", "Emma"));
        assertArrayEquals(("\nPersuasion\n\nSir Walter Elliot\n\nEMMA\n\nCHAPTER I\nEmma Woodhouse, handsome")
                .getBytes(StandardCharsets.UTF_8), joined);
    }

    @Test
    void decodesLatin1Elements() throws IOException {
        // levels bit 2 (LATIN1) in the CHARSXP flags means the bytes are ISO-8859-1
        byte[] raw = strsxp(3, 0x00004009, "Persuasion", "na\u00efve");
        AustenCorpus corpus = AustenCorpus.parse(blob(raw), "mem");
        assertEquals("Persuasion\nna\u00efve", corpus.novel("Persuasion"));
    }

    @Test
    void missingTitleListsThePresentOnes() throws IOException {
        AustenCorpus corpus = AustenCorpus.parse(blob(strsxp(3, 0x00040009, "EMMA", "x")), "mem");
        KilnException e = assertThrows(KilnException.class, () -> corpus.novel("Persuasion"));
        assertTrue(e.getMessage().contains("'Persuasion'") && e.getMessage().contains("[Emma]"), e.getMessage());
    }

    @Test
    void badFilesFailWithOffsetAndReason(@TempDir Path dir) throws IOException {
        byte[] good = blob(strsxp(3, 0x00040009, "EMMA", "text"));
        KilnException trunc = assertThrows(KilnException.class,
                () -> AustenCorpus.parse(Arrays.copyOf(good, good.length - 3), "f.rdb"));
        assertTrue(trunc.getMessage().contains("f.rdb") && trunc.getMessage().contains("byte 0"), trunc.getMessage());

        byte[] notZlib = concat(new byte[] {0, 0, 0, 10}, "hello, not zlib".getBytes(StandardCharsets.US_ASCII));
        KilnException z = assertThrows(KilnException.class, () -> AustenCorpus.parse(notZlib, "g.rdb"));
        assertTrue(z.getMessage().contains("g.rdb") && z.getMessage().contains("zlib"), z.getMessage());

        byte[] huge = {(byte) 0x7f, 0, 0, 0, 1, 2};
        KilnException h = assertThrows(KilnException.class, () -> AustenCorpus.parse(huge, "h.rdb"));
        assertTrue(h.getMessage().contains("declares length"), h.getMessage());

        byte[] second = concat(good, new byte[] {0, 0});
        KilnException tail = assertThrows(KilnException.class, () -> AustenCorpus.parse(second, "t.rdb"));
        assertTrue(tail.getMessage().contains("truncated blob header at byte " + good.length), tail.getMessage());

        byte[] notR = blob("hello world, not R".getBytes(StandardCharsets.US_ASCII));
        KilnException r = assertThrows(KilnException.class, () -> AustenCorpus.parse(notR, "r.rdb"));
        assertTrue(r.getMessage().contains("not an R XDR"), r.getMessage());

        byte[] intVector = strsxp(3, 0x00040009, "EMMA");
        intVector[2 + 12 + 4 + 5 + 3] = 13; // STRSXP -> INTSXP
        KilnException t = assertThrows(KilnException.class, () -> AustenCorpus.parse(blob(intVector), "i.rdb"));
        assertTrue(t.getMessage().contains("R type 13"), t.getMessage());

        byte[] shortElement = strsxp(3, 0x00040009, "EMMA", "abcdef");
        KilnException s = assertThrows(KilnException.class,
                () -> AustenCorpus.parse(blob(Arrays.copyOf(shortElement, shortElement.length - 2)), "s.rdb"));
        assertTrue(s.getMessage().contains("element 1") && s.getMessage().contains("declares length 6"),
                s.getMessage());

        KilnException missing = assertThrows(KilnException.class,
                () -> AustenCorpus.read(dir.resolve("absent.rdb")));
        assertTrue(missing.getMessage().contains("absent.rdb"), missing.getMessage());
    }

    /** The real file, when scripts/fetch-austen.sh has been run; the numbers come from data.md. */
    @Test
    void realPackageWhenFetched() {
        Path real = Path.of("../data/full/austen/Rdata.rdb");
        Assumptions.assumeTrue(Files.isRegularFile(real), "run scripts/fetch-austen.sh to include this check");
        AustenCorpus corpus = AustenCorpus.read(real);
        assertEquals(AustenCorpus.TITLES, List.copyOf(corpus.novels().keySet()));
        long lines = corpus.novels().values().stream().mapToLong(t -> t.split("\n", -1).length).sum();
        assertEquals(73_422, lines);
        String persuasion = corpus.novel("Persuasion");
        assertTrue(persuasion.contains("Sir Walter Elliot, of Kellynch Hall"), persuasion.substring(0, 200));
    }
}
