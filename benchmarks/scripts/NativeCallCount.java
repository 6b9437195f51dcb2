import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Runs one technique of plugins-mixup (or the copy baseline of AugmentCostBenchmark, id {@code copy}) on a batch of
 * 128 random images: a fixed warm-up of {@value #WARM_UP} calls, then the given number of calls, each in its own
 * scope as in the benchmark. It measures nothing itself: native-calls.py runs it twice under {@code perf stat} with
 * a probe on every JNI function of DJL's PyTorch library, once with 0 calls and once with N, and divides the
 * difference by N, which leaves exactly the native calls of one technique call.
 *
 * <p>{@code java -cp CP benchmarks/scripts/NativeCallCount.java cutmix 1x28x28 1000}, with the plugin and its
 * dependencies on the class path.
 */
public class NativeCallCount {
    private static final int BATCH = 128;
    private static final int CLASSES = 10;
    private static final int WARM_UP = 300;

    public static void main(String[] args) {
        if (args.length != 3) {
            throw new IllegalArgumentException("usage: NativeCallCount id|copy CxHxW calls");
        }
        Engine.getEngine("PyTorch");
        JniUtils.setNumThreads(1);
        long[] sample = Arrays.stream(args[1].split("x")).mapToLong(Long::parseLong).toArray();
        int calls = Integer.parseInt(args[2]);
        try (NDManager base = NDManager.newBaseManager()) {
            NDArray x = base.randomUniform(0, 1, new Shape(BATCH, sample[0], sample[1], sample[2]), DataType.FLOAT32);
            NDArray y = base.randomInteger(0, CLASSES, new Shape(BATCH), DataType.INT64);
            SplittableRandom random = new SplittableRandom(1);
            Runnable body;
            if (args[0].equals("copy")) {
                // The copy baseline of AugmentCostBenchmark: a copy of the inputs and the one-hot targets.
                body = () -> {
                    Batch batch = new Batch(x, y, CLASSES);
                    batch.inputs().duplicate();
                    batch.softTargets();
                };
            } else {
                Augmentation technique = Registry.discover(NativeCallCount.class.getClassLoader())
                        .create(Kind.AUGMENT, Augmentation.class, args[0], Map.of());
                body = () -> technique.mix(new Batch(x, y, CLASSES), new MixContext(random, 0, 10, 0));
            }
            for (int i = 0; i < WARM_UP + calls; i++) {
                try (NDManager scope = base.newSubManager()) {
                    x.tempAttach(scope);
                    y.tempAttach(scope);
                    body.run();
                }
            }
        }
    }
}
