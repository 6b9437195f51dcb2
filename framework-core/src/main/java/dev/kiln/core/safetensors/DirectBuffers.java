package dev.kiln.core.safetensors;

import java.lang.reflect.Field;
import java.nio.ByteBuffer;

/**
 * Frees direct and memory-mapped buffers at once instead of when the garbage collector gets to them.
 *
 * <p>java.nio has no public way to release a buffer; its native memory (or mapping) goes away only when the buffer
 * object is collected. A merge that reads gigabytes through a mostly idle heap produces few collections, so direct
 * buffers pile up until {@code -XX:MaxDirectMemorySize} (by default the heap size) is exhausted. {@code
 * sun.misc.Unsafe.invokeCleaner} (module jdk.unsupported, usable without flags on Java 9+) runs the buffer's cleaner
 * now. The caller must hold the only use of the buffer: touching it afterwards reads freed memory.
 */
public final class DirectBuffers {

    private static final sun.misc.Unsafe UNSAFE = unsafe();

    private DirectBuffers() {
    }

    /**
     * Releases {@code buffer}'s native memory or mapping now. Heap buffers, null, and slices or duplicates (which do
     * not own memory; invokeCleaner refuses them) are left to the garbage collector.
     */
    public static void free(ByteBuffer buffer) {
        if (buffer == null || !buffer.isDirect() || UNSAFE == null) {
            return;
        }
        try {
            UNSAFE.invokeCleaner(buffer);
        } catch (IllegalArgumentException notOwner) {
            // A slice or duplicate: its memory belongs to another buffer, which the caller frees.
        }
    }

    private static sun.misc.Unsafe unsafe() {
        try {
            Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return (sun.misc.Unsafe) f.get(null);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // Without it buffers are still freed, only later (by GC); correctness does not depend on it.
            return null;
        }
    }
}
