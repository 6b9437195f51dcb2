package dev.kiln.core.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AtomicFilesTest {

    @TempDir
    Path dir;

    private List<String> listing(Path folder) throws IOException {
        try (Stream<Path> s = Files.list(folder)) {
            return s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }

    @Test
    void writesCreateParentsAndReplaceWithoutLeavingTemporaries() throws IOException {
        Path target = dir.resolve("a/b/out.json");
        AtomicFiles.writeString(target, "first");
        assertEquals("first", Files.readString(target));
        AtomicFiles.write(target, out -> out.write("second".getBytes(StandardCharsets.UTF_8)));
        assertEquals("second", Files.readString(target));
        assertEquals(List.of("out.json"), listing(target.getParent()));
    }

    @Test
    void aFailingWriterLeavesTheOldFileAndNoTemporary() throws IOException {
        Path target = dir.resolve("out.txt");
        Files.writeString(target, "old");
        KilnException e = assertThrows(KilnException.class, () -> AtomicFiles.write(target, out -> {
            out.write("partial".getBytes(StandardCharsets.UTF_8));
            throw new IOException("disk full");
        }));
        assertTrue(e.getMessage().contains(target.toString()) && e.getMessage().contains("disk full"));
        assertEquals("old", Files.readString(target));
        assertEquals(List.of("out.txt"), listing(dir));
        assertThrows(IllegalStateException.class, () -> AtomicFiles.write(target, out -> {
            throw new IllegalStateException("bug");
        }));
        assertEquals("old", Files.readString(target));
        assertEquals(List.of("out.txt"), listing(dir));
    }

    @Test
    void pendingWritesAreInvisibleUntilCommitAndVanishOnClose() throws IOException {
        Path target = dir.resolve("p.bin");
        try (AtomicFiles.Pending p = AtomicFiles.begin(target)) {
            p.write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
            // An early flush sends bytes to the disk but publishes nothing: the abandoned write still vanishes.
            p.flushEarly();
            assertTrue(Files.exists(p.tempFile()));
            assertEquals(p.tempFile().getParent(), target.toAbsolutePath().getParent(), "temp is a sibling");
            assertFalse(Files.exists(target));
        }
        assertEquals(List.of(), listing(dir));
        try (AtomicFiles.Pending p = AtomicFiles.begin(target)) {
            p.write(ByteBuffer.wrap(new byte[] {4, 5}));
            p.flushEarly();
            assertFalse(Files.exists(target), "an early flush does not commit");
            p.write(ByteBuffer.wrap(new byte[] {6}));
            p.commit();
            assertThrows(IllegalStateException.class, p::commit);
        }
        assertArrayEquals(new byte[] {4, 5, 6}, Files.readAllBytes(target));
        assertEquals(List.of("p.bin"), listing(dir));
    }

    @Test
    void aDirectoryAtTheTargetIsRefusedByName() throws IOException {
        Path target = Files.createDirectory(dir.resolve("taken"));
        KilnException e = assertThrows(KilnException.class, () -> AtomicFiles.writeString(target, "x"));
        assertTrue(e.getMessage().contains(target.toString()) && e.getMessage().contains("directory"));
    }
}
