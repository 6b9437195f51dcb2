package dev.kiln.benchmarks.augment;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Parameter;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import ai.djl.training.ParameterStore;
import dev.kiln.core.model.KilnModel;
import dev.kiln.core.model.ModelZoo;
import dev.kiln.core.train.SgdOptimizer;
import dev.kiln.core.train.SoftTargetLoss;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Per-batch cost of each mixed-sample augmentation of {@code plugins-mixup} (default parameters) at batch 128, against
 * two references measured in the same run: the baseline {@link #copyBaseline} (what any step pays without mixing: a
 * copy of the inputs and one-hot targets) and {@link #cnnStep}, one training step of the zoo {@code cnn} (forward,
 * backward, SGD update) at the same batch size.
 *
 * <p>libtorch runs with 1 intra-op thread, as training does by default, so the numbers are per core and less
 * disturbed by other work on a shared machine. Every invocation runs inside a fresh sub-manager to which the batch is
 * temporarily attached: everything an invocation creates is freed when it ends, as in {@code TrainingRun}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Dai.djl.offline=true",
        "-Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error"})
public class AugmentCostBenchmark {
    /** Samples per batch of the cnn step, and the default of {@link Data#batch}. */
    public static final int BATCH = 128;
    /** Classes of the one-hot targets. */
    public static final int CLASSES = 10;
    /** libtorch intra-op threads during the run. */
    public static final int THREADS = 1;

    /** A random float32 batch (N, C, H, W) with integer labels, kept for the whole trial. */
    @State(Scope.Thread)
    public static class Data {
        /** Sample shape C x H x W: Fashion-MNIST or CIFAR size. */
        @Param({"1x28x28", "3x32x32"})
        public String shape;
        /**
         * Samples per batch: {@link #BATCH} for the published tables. A tiny batch ({@code -p batch=2 -p shape=1x8x8})
         * leaves a technique only its fixed cost per call (native calls, scope), with next to no data to move.
         */
        @Param({"128"})
        public int batch;

        NDManager manager;
        NDArray inputs;
        NDArray labels;
        SplittableRandom random;
        long step;

        @Setup(Level.Trial)
        public void setUp() {
            // The engine loads libtorch; the thread setting needs it loaded.
            Engine engine = Engine.getEngine("PyTorch");
            JniUtils.setNumThreads(THREADS);
            engine.setRandomSeed(42);
            manager = NDManager.newBaseManager(engine.defaultDevice());
            inputs = manager.randomUniform(0, 1, new Shape(batch).addAll(sampleShape(shape)), DataType.FLOAT32);
            labels = manager.randomInteger(0, CLASSES, new Shape(batch), DataType.INT64);
            random = new SplittableRandom(42);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            manager.close();
        }
    }

    /** The technique under test, created through the registry as the plugin does. */
    @State(Scope.Thread)
    public static class Technique {
        /** Technique id in {@code plugins-mixup}. */
        @Param({"mixup", "cutmix", "fmix", "resizemix", "mixup-cutmix", "decoupled"})
        public String id;

        Augmentation augmentation;

        @Setup(Level.Trial)
        public void setUp() {
            augmentation = Registry.discover(AugmentCostBenchmark.class.getClassLoader())
                    .create(Kind.AUGMENT, Augmentation.class, id, Map.of());
        }
    }

    /** The zoo {@code cnn} with its SGD optimiser on a 1x28x28 batch. */
    @State(Scope.Thread)
    public static class Cnn {
        NDManager manager;
        NDArray inputs;
        NDArray targets;
        KilnModel model;
        Map<String, Parameter> params;
        SgdOptimizer optimizer;
        ParameterStore store;
        long step;

        @Setup(Level.Trial)
        public void setUp() {
            // The engine loads libtorch; the thread setting needs it loaded.
            Engine engine = Engine.getEngine("PyTorch");
            JniUtils.setNumThreads(THREADS);
            engine.setRandomSeed(42);
            manager = NDManager.newBaseManager(engine.defaultDevice());
            Shape sample = sampleShape("1x28x28");
            inputs = manager.randomNormal(new Shape(BATCH).addAll(sample));
            targets = manager.randomInteger(0, CLASSES, new Shape(BATCH), DataType.INT64).oneHot(CLASSES);
            model = ModelZoo.build("cnn", Map.of(), sample, CLASSES).initialize(manager, 42);
            params = model.parameters();
            // The defaults of TrainingConfig: momentum 0.9, weight decay 5e-4.
            optimizer = new SgdOptimizer(0.9, false, 5e-4);
            store = new ParameterStore(manager, false);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            manager.close();
        }
    }

    /** Baseline: what a step pays for its batch without mixing (a copy of the inputs and one-hot targets). */
    @Benchmark
    public Object copyBaseline(Data data) {
        try (NDManager scope = data.manager.newSubManager()) {
            attach(scope, data.inputs, data.labels);
            return copyBatch(data.inputs, data.labels);
        }
    }

    /**
     * The work of the copy baseline, shared with {@link AugmentOpCostBenchmark}: a copy of the inputs and the one-hot
     * targets, created in the inputs' manager.
     */
    static long copyBatch(NDArray inputs, NDArray labels) {
        Batch batch = new Batch(inputs, labels, CLASSES);
        return batch.inputs().duplicate().getShape().size() + batch.softTargets().getShape().size();
    }

    /** One technique mixing one batch: mixed inputs and soft targets. */
    @Benchmark
    public Object augment(Data data, Technique technique) {
        try (NDManager scope = data.manager.newSubManager()) {
            attach(scope, data.inputs, data.labels);
            Batch batch = new Batch(data.inputs, data.labels, CLASSES);
            MixedBatch mixed = technique.augmentation.mix(batch,
                    new MixContext(data.random, 0, 10, data.step++));
            if (!mixed.inputs().getShape().equals(data.inputs.getShape())) {
                throw new KilnException("technique '" + technique.id + "' changed the input shape to "
                        + mixed.inputs().getShape());
            }
            return mixed.targets().getShape().size();
        }
    }

    /** Reference: one cnn training step (forward, soft-target cross-entropy, backward, SGD update, zero grads). */
    @Benchmark
    public double cnnStep(Cnn cnn) {
        try (NDManager scope = cnn.manager.newSubManager()) {
            attach(scope, cnn.inputs, cnn.targets);
            NDArray loss;
            try (GradientCollector collector = cnn.manager.getEngine().newGradientCollector()) {
                NDArray logits = cnn.model.forward(cnn.store, cnn.inputs, true);
                loss = SoftTargetLoss.crossEntropy(logits, cnn.targets);
                collector.backward(loss);
            }
            // A small fixed rate keeps the weights sane over thousands of steps on the same batch.
            cnn.optimizer.step(cnn.params, 1e-3, cnn.step++);
            for (Parameter p : cnn.params.values()) {
                if (p.requiresGradient() && p.getArray().hasGradient()) {
                    JniUtils.zeroGrad((PtNDArray) p.getArray());
                }
            }
            return loss.getFloat();
        }
    }

    /**
     * Lends the trial's arrays to the invocation's scope, so everything derived from them is created in (and freed
     * with) the scope; they return to the trial's manager when the scope closes.
     */
    private static void attach(NDManager scope, NDArray... arrays) {
        for (NDArray a : arrays) {
            a.tempAttach(scope);
        }
    }

    static Shape sampleShape(String text) {
        String[] parts = text.split("x");
        if (parts.length != 3) {
            throw new KilnException("sample shape '" + text + "' must be CxHxW, e.g. 3x32x32");
        }
        return new Shape(Long.parseLong(parts[0]), Long.parseLong(parts[1]), Long.parseLong(parts[2]));
    }
}
