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
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Same-process A/B of two builds of an augmentation plugin jar: each technique from jar A and from jar B, with the copy
 * baseline of AugmentCostBenchmark, timed in interleaved rounds in one JVM, so that both builds meet the same machine
 * state; prints the fastest round of each. JMH runs of the two builds one after the other differ by more than a small
 * change on a noisy machine; this does not replace them, it tells which build is faster.
 *
 * <p>Run as a single-file program with the plugin's dependencies (SPI, DJL, libtorch) on the class path, but not the
 * plugin itself (see docs/results/augment-cost.md):
 * {@code java -cp CP benchmarks/scripts/TechniqueAb.java A.jar B.jar 1x28x28 cutmix,mixup-cutmix}
 */
public class TechniqueAb {
    private static final int BATCH = 128;
    private static final int CLASSES = 10;
    private static final int ROUNDS = 25;
    private static final int CALLS_PER_ROUND = 1000;

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            throw new IllegalArgumentException("usage: TechniqueAb A.jar B.jar CxHxW id[,id...]");
        }
        Engine.getEngine("PyTorch");
        JniUtils.setNumThreads(1);
        long[] sample = Arrays.stream(args[2].split("x")).mapToLong(Long::parseLong).toArray();
        ClassLoader app = TechniqueAb.class.getClassLoader();
        ClassLoader a = new URLClassLoader(new URL[] {Path.of(args[0]).toUri().toURL()}, app);
        ClassLoader b = new URLClassLoader(new URL[] {Path.of(args[1]).toUri().toURL()}, app);
        try (NDManager base = NDManager.newBaseManager()) {
            NDArray x = base.randomUniform(0, 1, new Shape(BATCH, sample[0], sample[1], sample[2]), DataType.FLOAT32);
            NDArray y = base.randomInteger(0, CLASSES, new Shape(BATCH), DataType.INT64);
            SplittableRandom random = new SplittableRandom(1);
            List<String> names = new ArrayList<>(List.of("copy baseline"));
            List<Runnable> bodies = new ArrayList<>();
            bodies.add(() -> {
                Batch batch = new Batch(x, y, CLASSES);
                batch.inputs().duplicate();
                batch.softTargets();
            });
            for (String id : args[3].split(",")) {
                for (ClassLoader loader : List.of(a, b)) {
                    Augmentation technique = Registry.discover(loader)
                            .create(Kind.AUGMENT, Augmentation.class, id, Map.of());
                    if (technique.getClass().getClassLoader() != loader) {
                        throw new IllegalStateException(id + " was not loaded from its jar: is the plugin on the"
                                + " class path too?");
                    }
                    names.add(id + (loader == a ? " A" : " B"));
                    bodies.add(() -> technique.mix(new Batch(x, y, CLASSES), new MixContext(random, 0, 10, 0)));
                }
            }
            double[] fastest = new double[names.size()];
            Arrays.fill(fastest, Double.MAX_VALUE);
            for (int round = 0; round < ROUNDS; round++) {
                for (int k = 0; k < bodies.size(); k++) {
                    long start = System.nanoTime();
                    for (int i = 0; i < CALLS_PER_ROUND; i++) {
                        // As in AugmentCostBenchmark: every call in its own scope, so what it creates is freed.
                        try (NDManager scope = base.newSubManager()) {
                            x.tempAttach(scope);
                            y.tempAttach(scope);
                            bodies.get(k).run();
                        }
                    }
                    fastest[k] = Math.min(fastest[k], (System.nanoTime() - start) / 1e3 / CALLS_PER_ROUND);
                }
            }
            System.out.printf("batch %d x %s, fastest of %d rounds of %d calls%n", BATCH, args[2], ROUNDS,
                    CALLS_PER_ROUND);
            for (int k = 0; k < names.size(); k++) {
                System.out.printf("| %s | %.1f | %.2f |%n", names.get(k), fastest[k], fastest[k] / fastest[0]);
            }
        }
    }
}
