package dev.kiln.core.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A writer killed with SIGKILL mid-write leaves the output path as it was: absent, or the complete older file. */
class KilledWriterTest {

    @TempDir
    Path dir;

    private Path tempOf(Path target) throws IOException {
        try (Stream<Path> files = Files.list(target.getParent())) {
            return files.filter(p -> p.getFileName().toString().startsWith("." + target.getFileName() + ".")
                    && p.getFileName().toString().endsWith(AtomicFiles.TEMP_SUFFIX)).findFirst().orElse(null);
        }
    }

    /** Starts the slow writer, waits until its temporary file exists and has grown, then SIGKILLs it. */
    private void killMidWrite(Path target) throws Exception {
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        Process child = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                SlowWriterMain.class.getName(), target.toString(), "200", "4096", "20")
                .redirectErrorStream(true).redirectOutput(dir.resolve("child.log").toFile()).start();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            long firstSize = -1;
            while (true) {
                if (!child.isAlive()) {
                    fail("the writer exited early (code " + child.exitValue() + "): "
                            + Files.readString(dir.resolve("child.log")));
                }
                Path temp = tempOf(target);
                long size = temp == null ? -1 : sizeOrMinusOne(temp);
                if (size > 0 && firstSize < 0) {
                    firstSize = size;
                } else if (firstSize > 0 && size > firstSize) {
                    break; // exists and grows: the writer is mid-way through the data
                }
                if (System.nanoTime() > deadline) {
                    fail("no growing temporary file within 30 s; log: " + Files.readString(dir.resolve("child.log")));
                }
                Thread.sleep(10);
            }
            child.destroyForcibly(); // SIGKILL on Linux: no finally blocks, no shutdown hooks run in the child
            assertTrue(child.waitFor(30, TimeUnit.SECONDS));
        } finally {
            child.destroyForcibly();
        }
        assertTrue(tempOf(target) != null, "the killed writer's temporary file is still there (nobody cleaned up)");
    }

    private static long sizeOrMinusOne(Path p) {
        try {
            return Files.size(p);
        } catch (IOException e) {
            return -1;
        }
    }

    @Test
    void killedWriterLeavesNoFileAtTheOutputPath() throws Exception {
        Path target = dir.resolve("model.safetensors");
        killMidWrite(target);
        assertFalse(Files.exists(target));
    }

    @Test
    void killedWriterLeavesAnOlderFileUntouched() throws Exception {
        Path target = dir.resolve("model.safetensors");
        byte[] old = "an older, complete checkpoint".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        Files.write(target, old);
        killMidWrite(target);
        assertArrayEquals(old, Files.readAllBytes(target));
    }
}
