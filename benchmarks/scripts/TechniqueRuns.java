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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Runs plugins-mixup techniques, and the copy baseline of AugmentCostBenchmark, on a batch of 128 random images, each
 * call in its own scope as the benchmark does. Two modes:
 * <ul>
 *   <li>{@code ab A.jar B.jar CxHxW id[,id...]}: same-process A/B of two builds of the plugin jar. Each technique from
 *   jar A and from jar B, with the copy baseline, is timed in interleaved rounds in one JVM, so that both builds meet
 *   the same machine state; prints the fastest round of each. JMH runs of two builds one after the other differ by
 *   more than a small change on a noisy machine; this does not replace them, it tells which build is faster. Put the
 *   plugin's dependencies on the class path, not the plugin itself.</li>
 *   <li>{@code time CxHxW id[,id...]}: the copy baseline and each technique of the plugin on the class path, timed
 *   in interleaved rounds as in {@code ab}; reference-augment-cost.py times timm's implementations the same way, so
 *   the two tables can be read side by side. Put the plugin and its dependencies on the class path.</li>
 *   <li>{@code count id|copy CxHxW calls}: a fixed warm-up of {@value #WARM_UP} calls, then {@code calls} calls, timing
 *   nothing. native-calls.py runs it under {@code perf stat} with 0 and with N calls and divides the difference in
 *   native calls by N. Put the plugin and its dependencies on the class path.</li>
 * </ul>
 * {@code java -cp CP benchmarks/scripts/TechniqueRuns.java ab A.jar B.jar 1x28x28 cutmix,mixup-cutmix} (see
 * docs/results/augment-cost.md). A technique runs with its defaults, or with the parameters given after its id:
 * {@code cutmix:pairing=flip}.
 */
public class TechniqueRuns {
    private static final int BATCH = 128;
    private static final int CLASSES = 10;
    private static final int ROUNDS = 25;
    private static final int CALLS_PER_ROUND = 1000;
    private static final int WARM_UP = 300;
    private static final String USAGE = "usage: TechniqueRuns ab A.jar B.jar CxHxW id[,id...]"
            + " | TechniqueRuns time CxHxW id[,id...] | TechniqueRuns count id|copy CxHxW calls";

    public static void main(String[] args) throws Exception {
        if (args.length == 5 && args[0].equals("ab")) {
            ab(args);
        } else if (args.length == 3 && args[0].equals("time")) {
            time(args);
        } else if (args.length == 4 && args[0].equals("count")) {
            count(args);
        } else {
            throw new IllegalArgumentException(USAGE);
        }
    }

    private static void ab(String[] args) throws Exception {
        ClassLoader app = TechniqueRuns.class.getClassLoader();
        Map<String, ClassLoader> jars = new LinkedHashMap<>();
        jars.put(" A", new URLClassLoader(new URL[] {Path.of(args[1]).toUri().toURL()}, app));
        jars.put(" B", new URLClassLoader(new URL[] {Path.of(args[2]).toUri().toURL()}, app));
        timeTechniques(args[3], args[4], jars, true);
    }

    private static void time(String[] args) {
        timeTechniques(args[1], args[2], Map.of("", TechniqueRuns.class.getClassLoader()), false);
    }

    /**
     * Times the copy baseline and each technique of {@code ids} as created by each loader (named by the id and the
     * loader's suffix) in {@value #ROUNDS} interleaved rounds of {@value #CALLS_PER_ROUND} calls, and prints the
     * fastest round of each, in microseconds per call and as a multiple of the copy's. With {@code fromOwnJar} a
     * technique must come from its loader's own jar, not from a plugin also on the class path.
     */
    private static void timeTechniques(String shape, String ids, Map<String, ClassLoader> loaders,
            boolean fromOwnJar) {
        try (Bench bench = new Bench(shape)) {
            List<String> names = new ArrayList<>(List.of("copy baseline"));
            List<Runnable> bodies = new ArrayList<>(List.of(bench.copy()));
            for (String id : ids.split(",")) {
                for (Map.Entry<String, ClassLoader> loader : loaders.entrySet()) {
                    Augmentation technique = create(loader.getValue(), id);
                    if (fromOwnJar && technique.getClass().getClassLoader() != loader.getValue()) {
                        throw new IllegalStateException(id + " was not loaded from its jar: is the plugin on the"
                                + " class path too?");
                    }
                    names.add(id + loader.getKey());
                    bodies.add(bench.mix(technique));
                }
            }
            double[] fastest = new double[names.size()];
            Arrays.fill(fastest, Double.MAX_VALUE);
            for (int round = 0; round < ROUNDS; round++) {
                for (int k = 0; k < bodies.size(); k++) {
                    long start = System.nanoTime();
                    bench.run(bodies.get(k), CALLS_PER_ROUND);
                    fastest[k] = Math.min(fastest[k], (System.nanoTime() - start) / 1e3 / CALLS_PER_ROUND);
                }
            }
            System.out.printf("batch %d x %s, fastest of %d rounds of %d calls%n", BATCH, shape, ROUNDS,
                    CALLS_PER_ROUND);
            for (int k = 0; k < names.size(); k++) {
                System.out.printf("| %s | %.1f | %.2f |%n", names.get(k), fastest[k], fastest[k] / fastest[0]);
            }
        }
    }

    private static void count(String[] args) {
        try (Bench bench = new Bench(args[2])) {
            Runnable body = args[1].equals("copy") ? bench.copy()
                    : bench.mix(create(TechniqueRuns.class.getClassLoader(), args[1]));
            bench.run(body, WARM_UP + Integer.parseInt(args[3]));
        }
    }

    /** A technique with its defaults, or with the parameters after its id: {@code cutmix:pairing=flip:alpha=0.5}. */
    private static Augmentation create(ClassLoader loader, String spec) {
        String[] parts = spec.split(":");
        Map<String, String> parameters = new LinkedHashMap<>();
        for (int i = 1; i < parts.length; i++) {
            String[] pair = parts[i].split("=", 2);
            if (pair.length != 2) {
                throw new IllegalArgumentException("parameter '" + parts[i] + "' of '" + spec + "' is not key=value");
            }
            parameters.put(pair[0], pair[1]);
        }
        return Registry.discover(loader).create(Kind.AUGMENT, Augmentation.class, parts[0], parameters);
    }

    /** The engine on 1 thread, a random float32 batch of 128 samples of the given shape and its integer labels. */
    private static final class Bench implements AutoCloseable {
        final NDManager base;
        final NDArray x;
        final NDArray y;
        final SplittableRandom random = new SplittableRandom(1);

        Bench(String sampleShape) {
            Engine.getEngine("PyTorch");
            JniUtils.setNumThreads(1);
            long[] s = Arrays.stream(sampleShape.split("x")).mapToLong(Long::parseLong).toArray();
            base = NDManager.newBaseManager();
            x = base.randomUniform(0, 1, new Shape(BATCH, s[0], s[1], s[2]), DataType.FLOAT32);
            y = base.randomInteger(0, CLASSES, new Shape(BATCH), DataType.INT64);
        }

        /**
         * The copy baseline of AugmentCostBenchmark (a copy of the inputs and the one-hot targets); repeated here
         * because a single-file program cannot reach the benchmarks module.
         */
        Runnable copy() {
            return () -> {
                Batch batch = new Batch(x, y, CLASSES);
                batch.inputs().duplicate();
                batch.softTargets();
            };
        }

        Runnable mix(Augmentation technique) {
            return () -> technique.mix(new Batch(x, y, CLASSES), new MixContext(random, 0, 10, 0));
        }

        /** Runs {@code body} {@code calls} times, each in its own scope, so what a call creates is freed with it. */
        void run(Runnable body, int calls) {
            for (int i = 0; i < calls; i++) {
                try (NDManager scope = base.newSubManager()) {
                    x.tempAttach(scope);
                    y.tempAttach(scope);
                    body.run();
                }
            }
        }

        @Override
        public void close() {
            base.close();
        }
    }
}
