package dev.kiln.core.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.core.safetensors.SafetensorsReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The acceptance of reproducible training, across processes: the same seed on one thread writes a byte-identical
 * checkpoint twice, and a run killed with SIGKILL after its first epoch and resumed ends with exactly the
 * parameters of a run that was never interrupted.
 */
class KilledRunTest {
    @TempDir
    Path dir;

    private Process start(String... args) throws IOException {
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
                .toString(), "-Dai.djl.offline=true", "-cp", System.getProperty("java.class.path"),
                KilledRunChild.class.getName()));
        command.addAll(List.of(args));
        return new ProcessBuilder(command).redirectErrorStream(true).start();
    }

    private static void finish(Process process) throws Exception {
        String output = new String(process.getInputStream().readAllBytes());
        assertTrue(process.waitFor(120, TimeUnit.SECONDS), "child did not finish");
        assertEquals(0, process.exitValue(), output);
    }

    @Test
    void sameSeedTwiceGivesAByteIdenticalCheckpointAndAKilledRunResumesExactly() throws Exception {
        Path first = dir.resolve("first.safetensors");
        Path second = dir.resolve("second.safetensors");
        finish(start("straight", first.toString()));
        finish(start("straight", second.toString()));
        assertArrayEquals(Files.readAllBytes(first), Files.readAllBytes(second),
                "two runs with the same seed wrote different bytes");

        Path checkpoints = dir.resolve("checkpoints");
        Path resumedOut = dir.resolve("resumed.safetensors");
        Process victim = start("checkpointed", checkpoints.toString(), resumedOut.toString(), "60000");
        Path last = checkpoints.resolve(TrainingRun.CHECKPOINT);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!Files.exists(last) && System.nanoTime() < deadline && victim.isAlive()) {
            Thread.sleep(50);
        }
        assertTrue(Files.exists(last), "the first epoch's checkpoint never appeared");
        victim.destroyForcibly();
        victim.waitFor(30, TimeUnit.SECONDS);
        assertTrue(!Files.exists(resumedOut), "the killed run must not have finished");

        finish(start("checkpointed", checkpoints.toString(), resumedOut.toString(), "0"));
        try (SafetensorsReader straight = SafetensorsReader.open(first);
                SafetensorsReader resumed = SafetensorsReader.open(resumedOut)) {
            assertEquals(straight.names(), resumed.names());
            for (String name : straight.names()) {
                assertArrayEquals(straight.readBytes(name), resumed.readBytes(name), name);
            }
        }
    }
}
