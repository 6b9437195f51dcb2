package dev.kiln.core.io;

import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Locale;

/**
 * Atomic replacement of output files: every file Kiln writes goes through here.
 *
 * <p>The content is written to a temporary sibling of the target (same directory, so the final rename never crosses a
 * file system), forced to disk, renamed over the target in one atomic step, and then the directory itself is forced
 * so that the rename survives a power loss. A reader therefore sees either the complete old file or the complete new
 * one, never a prefix; a writer that dies (even by SIGKILL) leaves the target untouched and at most a stale temporary
 * file whose name starts with {@code .} and ends with {@link #TEMP_SUFFIX}.
 *
 * <p>Typical use:
 *
 * <pre>{@code
 * try (AtomicFiles.Pending out = AtomicFiles.begin(target)) {
 *     out.channel().write(...);
 *     out.commit();
 * } // closing without commit() deletes the temporary file
 * }</pre>
 */
public final class AtomicFiles {

    /** Suffix of every temporary file, so stale ones left by a killed writer are recognisable. */
    public static final String TEMP_SUFFIX = ".kiln-tmp";

    private static final boolean WINDOWS =
            System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("windows");

    private AtomicFiles() {}

    /**
     * Starts writing {@code target}: creates the parent directories and an empty temporary sibling open for writing.
     *
     * @throws KilnException naming the target when the directory or temporary file cannot be created
     */
    public static Pending begin(Path target) {
        Path absolute = target.toAbsolutePath().normalize();
        Path dir = absolute.getParent();
        if (dir == null) {
            throw new KilnException("Cannot write " + target + ": it has no parent directory");
        }
        if (Files.isDirectory(absolute)) {
            throw new KilnException("Cannot write " + target + ": a directory exists at that path");
        }
        Path temp = null;
        try {
            Files.createDirectories(dir);
            temp = Files.createTempFile(dir, "." + absolute.getFileName() + ".", TEMP_SUFFIX);
            FileChannel channel = FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.READ);
            return new Pending(absolute, temp, channel);
        } catch (IOException e) {
            deleteQuietly(temp);
            throw new KilnException("Cannot start writing " + target + ": " + e, e);
        }
    }

    /** Atomically replaces {@code target} with {@code bytes}. */
    public static void write(Path target, byte[] bytes) {
        try (Pending out = begin(target)) {
            out.write(ByteBuffer.wrap(bytes));
            out.commit();
        }
    }

    /** Atomically replaces {@code target} with {@code text} in UTF-8. */
    public static void writeString(Path target, String text) {
        write(target, text.getBytes(StandardCharsets.UTF_8));
    }

    /** Something that writes to a stream and may fail with an I/O error. */
    @FunctionalInterface
    public interface StreamWriter {
        /** Writes the whole content to {@code out}. */
        void writeTo(OutputStream out) throws IOException;
    }

    /** Atomically replaces {@code target} with what {@code writer} writes; nothing changes if it throws. */
    public static void write(Path target, StreamWriter writer) {
        try (Pending out = begin(target)) {
            // The stream is not closed: closing it would close the channel before commit() forces it.
            OutputStream stream = Channels.newOutputStream(out.channel());
            try {
                writer.writeTo(stream);
                stream.flush();
            } catch (IOException e) {
                throw new KilnException("Cannot write " + target + ": " + e, e);
            }
            out.commit();
        }
    }

    /** Deletes {@code path} if it exists, ignoring errors; for clean-up paths that must not mask the first error. */
    public static void deleteQuietly(Path path) {
        if (path == null) {
            return;
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException ignored) {
            // Best effort: the caller is already reporting the error that matters.
        }
    }

    /** Forces a directory's entries (a rename into it) to disk. */
    static void forceDirectory(Path dir) throws IOException {
        if (WINDOWS) {
            // Windows cannot open a directory as a channel; NTFS journals the rename itself.
            return;
        }
        try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ)) {
            channel.force(true);
        }
    }

    /**
     * A write in progress: a temporary file that becomes the target on {@link #commit()} and disappears on
     * {@link #close()} otherwise. Not thread-safe.
     */
    public static final class Pending implements AutoCloseable {
        private final Path target;
        private final Path temp;
        private final FileChannel channel;
        private boolean done;

        private Pending(Path target, Path temp, FileChannel channel) {
            this.target = target;
            this.temp = temp;
            this.channel = channel;
        }

        /** The final path. */
        public Path target() {
            return target;
        }

        /** The temporary file being written. */
        public Path tempFile() {
            return temp;
        }

        /** The temporary file's channel (positional writes are fine); do not close it. */
        public FileChannel channel() {
            if (done) {
                throw new IllegalStateException("The write of " + target + " is already finished");
            }
            return channel;
        }

        /** Writes all of {@code buffer} at the channel's current position. */
        public void write(ByteBuffer buffer) {
            try {
                while (buffer.hasRemaining()) {
                    channel().write(buffer);
                }
            } catch (IOException e) {
                throw new KilnException("Cannot write " + target + ": " + e, e);
            }
        }

        /**
         * Sends what was written so far to the disk without finishing the write, so that {@link #commit()}'s force
         * has little left to wait for: a writer that calls this now and then while it works overlaps the disk's
         * writing with its own. Safe while other threads write at positions of the channel.
         */
        public void flushEarly() {
            try {
                channel.force(false);
            } catch (IOException e) {
                throw new KilnException("Cannot write " + target + ": " + e, e);
            }
        }

        /**
         * Forces the content to disk, renames the temporary file onto the target (replacing it) and forces the
         * directory. On failure the temporary file is deleted and the old target, if any, is left as it was.
         */
        public void commit() {
            if (done) {
                throw new IllegalStateException("The write of " + target + " is already finished");
            }
            done = true;
            try {
                try {
                    channel.force(true);
                } finally {
                    channel.close();
                }
                try {
                    Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    throw new KilnException("Cannot replace " + target + " atomically: the file system of "
                            + target.getParent() + " does not support atomic renames", e);
                }
                forceDirectory(target.getParent());
            } catch (IOException e) {
                deleteQuietly(temp);
                throw new KilnException("Cannot write " + target + ": " + e, e);
            } catch (RuntimeException e) {
                deleteQuietly(temp);
                throw e;
            }
        }

        /** Abandons the write unless it was committed: the temporary file is deleted, the target untouched. */
        @Override
        public void close() {
            if (done) {
                return;
            }
            done = true;
            try {
                channel.close();
            } catch (IOException ignored) {
                // The file is deleted next; a close error changes nothing.
            }
            deleteQuietly(temp);
        }
    }
}
