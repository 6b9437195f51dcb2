package dev.kiln.core.io;

import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsWriter;
import dev.kiln.core.safetensors.TensorSpec;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Run in a child JVM by {@link KilledWriterTest}: writes a checkpoint slowly (a tensor, then a pause) so that the test
 * can kill it mid-write. Arguments: target path, tensor count, bytes per tensor, pause in milliseconds.
 */
public final class SlowWriterMain {
    private SlowWriterMain() {}

    public static void main(String[] args) throws Exception {
        Path target = Path.of(args[0]);
        int count = Integer.parseInt(args[1]);
        int bytes = Integer.parseInt(args[2]);
        long pause = Long.parseLong(args[3]);
        List<TensorSpec> specs = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            specs.add(new TensorSpec("t" + i, DType.U8, new long[] {bytes}));
        }
        byte[] data = new byte[bytes];
        java.util.Arrays.fill(data, (byte) 0x5a);
        try (SafetensorsWriter w = SafetensorsWriter.create(target, Map.of("writer", "slow"), specs)) {
            for (int i = 0; i < count; i++) {
                w.write("t" + i, ByteBuffer.wrap(data));
                Thread.sleep(pause);
            }
            w.commit();
        }
    }
}
