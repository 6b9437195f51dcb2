package dev.kiln.testkit;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.ParameterType;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Technique;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import dev.kiln.spi.augment.MixedBatch;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;

/** Runs an augmentation on small random batches and checks the {@link Augmentation} contract. */
final class AugmentChecks {
    static final int CLASSES = 10;
    static final List<Shape> SHAPES = List.of(new Shape(1, 1, 8, 8), new Shape(5, 3, 8, 10), new Shape(4, 1, 28, 28));
    /** Beta(a, a) with a tiny a puts lambda at 0 or 1 almost surely; a huge a pins it near 0.5. */
    static final double[] EXTREME_ALPHAS = {1e-3, 1e3};
    private static final double SUM_TOLERANCE = 1e-5;

    private final Findings findings;
    private final long seed;

    AugmentChecks(Findings findings, long seed) {
        this.findings = findings;
        this.seed = seed;
    }

    /** The host data of one batch, kept so a second run and the unchanged-input check see the same values. */
    private record Data(Shape shape, float[] inputs, long[] intLabels, float[] softLabels) {
        String describe() {
            return "batch " + shape + " with " + (intLabels != null ? "int" : "soft") + " labels";
        }

        int n() {
            return (int) shape.get(0);
        }

        Batch batch(NDManager manager) {
            NDArray x = manager.create(inputs, shape);
            NDArray y = intLabels != null ? manager.create(intLabels)
                    : manager.create(softLabels, new Shape(n(), CLASSES));
            return new Batch(x, y, CLASSES);
        }
    }

    private static Data data(Shape shape, boolean soft, boolean zeros, long seed) {
        Random random = new Random(seed * 31 + shape.size());
        int n = (int) shape.get(0);
        float[] inputs = zeros ? new float[(int) shape.size()] : Host.gaussian(random, (int) shape.size());
        if (!soft) {
            long[] labels = new long[n];
            for (int i = 0; i < n; i++) {
                labels[i] = random.nextInt(CLASSES);
            }
            return new Data(shape, inputs, labels, null);
        }
        float[] labels = new float[n * CLASSES];
        for (int i = 0; i < n; i++) {
            double sum = 0;
            for (int k = 0; k < CLASSES; k++) {
                labels[i * CLASSES + k] = random.nextFloat() + 0.01f;
                sum += labels[i * CLASSES + k];
            }
            for (int k = 0; k < CLASSES; k++) {
                labels[i * CLASSES + k] /= (float) sum;
            }
        }
        return new Data(shape, inputs, null, labels);
    }

    private MixContext context(long contextSeed) {
        return new MixContext(new SplittableRandom(contextSeed), 0, 10, 0);
    }

    void run(Technique<?> technique, Augmentation augmentation, Map<String, String> parameters) {
        try (NDManager manager = NDManager.newBaseManager()) {
            for (Shape shape : SHAPES) {
                for (boolean soft : new boolean[] {false, true}) {
                    one(augmentation, manager, data(shape, soft, false, seed), "", true);
                }
            }
            if (findings.on(TechniqueContract.ZERO_INPUTS)) {
                Data zeros = data(SHAPES.get(1), false, true, seed);
                one(augmentation, manager, zeros, " (all-zero inputs)", false);
            }
            if (findings.on(TechniqueContract.EXTREME_ALPHA)) {
                extremeAlpha(technique, parameters, manager);
            }
        }
    }

    private void extremeAlpha(Technique<?> technique, Map<String, String> parameters, NDManager manager) {
        List<String> alphas = technique.parameters().stream()
                .filter(s -> s.type() == ParameterType.DOUBLE && (s.name().equals("alpha") || s.name().endsWith("-alpha")))
                .map(ParameterSpec::name).toList();
        if (alphas.isEmpty()) {
            return;
        }
        for (double alpha : EXTREME_ALPHAS) {
            Map<String, String> raw = new HashMap<>(parameters);
            for (String name : alphas) {
                raw.put(name, Double.toString(alpha));
            }
            Parameters bound;
            try {
                bound = Parameters.bind(technique, raw);
            } catch (RuntimeException e) {
                continue; // the technique's own range excludes this alpha, so it can never be asked for it
            }
            Object created = ParameterChecks.create(technique, bound, findings);
            if (!(created instanceof Augmentation augmentation)) {
                continue;
            }
            // Several seeds: with a tiny alpha, lambda lands on 0 or on 1 depending on the draw.
            for (long s = 0; s < 8; s++) {
                one(augmentation, manager, data(SHAPES.get(1), s % 2 == 1, false, seed + s),
                        " with " + String.join(", ", alphas) + " = " + alpha + " (seed " + (seed + s) + ")", false);
            }
        }
    }

    private void one(Augmentation augmentation, NDManager manager, Data data, String note, boolean full) {
        String where = " on " + data.describe() + note;
        try (NDManager scope = manager.newSubManager()) {
            Batch batch = data.batch(scope);
            MixedBatch out;
            try {
                out = augmentation.mix(batch, context(seed));
            } catch (RuntimeException e) {
                findings.fail("mix threw " + Findings.describe(e) + where);
                return;
            }
            if (out == null || out.inputs() == null || out.targets() == null) {
                findings.fail("mix returned " + (out == null ? "null" : "a MixedBatch with null arrays") + where);
                return;
            }
            if (full) {
                structure(batch, out, data, where);
            }
            findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("mixed inputs", out.inputs()), where));
            findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("targets", out.targets()), where));
            targets(out.targets(), data.n(), where);
            if (full && findings.on(TechniqueContract.INPUTS_UNCHANGED)) {
                if (Host.firstDifference(Host.values(batch.inputs()), data.inputs()) >= 0) {
                    findings.fail("mix modified the batch's input array" + where);
                }
                double[] labels = Host.values(batch.labels());
                double[] expected = new double[labels.length];
                for (int i = 0; i < expected.length; i++) {
                    expected[i] = data.intLabels() != null ? data.intLabels()[i] : data.softLabels()[i];
                }
                if (Host.firstDifference(labels, expected, 0) >= 0) {
                    findings.fail("mix modified the batch's label array" + where);
                }
            }
            if (full && out.extraLoss() != null && findings.on(TechniqueContract.EXTRA_LOSS)) {
                extraLoss(out, scope, data, where);
            }
            if (full && findings.on(TechniqueContract.DETERMINISM)) {
                MixedBatch again;
                try {
                    again = augmentation.mix(data.batch(scope), context(seed));
                } catch (RuntimeException e) {
                    findings.fail("second mix with the same seed threw " + Findings.describe(e) + where);
                    return;
                }
                int at = Host.firstDifference(Host.values(again.inputs()), Host.values(out.inputs()), 0);
                int atTargets = Host.firstDifference(Host.values(again.targets()), Host.values(out.targets()), 0);
                if (at >= 0 || atTargets >= 0) {
                    findings.fail("not deterministic: the same MixContext seed gave different "
                            + (at >= 0 ? "inputs (flat index " + at + ")" : "targets (flat index " + atTargets + ")")
                            + where + "; draw every random number from MixContext.random() or seed the engine "
                            + "from it");
                }
            }
        }
    }

    private void structure(Batch batch, MixedBatch out, Data data, String where) {
        if (findings.on(TechniqueContract.SHAPE) && !out.inputs().getShape().equals(data.shape())) {
            findings.fail("mixed inputs have shape " + out.inputs().getShape() + ", expected " + data.shape() + where);
        }
        if (findings.on(TechniqueContract.DTYPE)) {
            if (out.inputs().getDataType() != batch.inputs().getDataType()) {
                findings.fail("mixed inputs are " + out.inputs().getDataType() + ", expected "
                        + batch.inputs().getDataType() + where);
            }
            if (out.targets().getDataType() != DataType.FLOAT32) {
                findings.fail("targets are " + out.targets().getDataType() + ", expected float32" + where);
            }
        }
        if (findings.on(TechniqueContract.DEVICE)) {
            if (!out.inputs().getDevice().equals(batch.inputs().getDevice())
                    || !out.targets().getDevice().equals(batch.inputs().getDevice())) {
                findings.fail("outputs are on " + out.inputs().getDevice() + "/" + out.targets().getDevice()
                        + ", the batch on " + batch.inputs().getDevice() + where);
            }
        }
    }

    private void targets(NDArray targets, int n, String where) {
        if (!findings.on(TechniqueContract.TARGETS)) {
            return;
        }
        Shape expected = new Shape(n, CLASSES);
        if (!targets.getShape().equals(expected)) {
            findings.fail("targets have shape " + targets.getShape() + ", expected " + expected + where);
            return;
        }
        double[] values = Host.values(targets);
        for (int i = 0; i < n; i++) {
            double sum = 0;
            double min = Double.POSITIVE_INFINITY;
            for (int k = 0; k < CLASSES; k++) {
                sum += values[i * CLASSES + k];
                min = Math.min(min, values[i * CLASSES + k]);
            }
            if (!(Math.abs(sum - 1) <= SUM_TOLERANCE)) {
                findings.fail("targets row " + i + " sums to " + sum + ", expected 1" + where);
                return;
            }
            if (min < -SUM_TOLERANCE) {
                findings.fail("targets row " + i + " has the negative entry " + min + where);
                return;
            }
        }
    }

    private void extraLoss(MixedBatch out, NDManager scope, Data data, String where) {
        NDArray logits = scope.create(Host.gaussian(new Random(seed), data.n() * CLASSES),
                new Shape(data.n(), CLASSES));
        try {
            NDArray loss = out.extraLoss().compute(logits);
            if (loss == null || loss.size() != 1) {
                findings.fail("extra loss is " + (loss == null ? "null" : "of shape " + loss.getShape())
                        + ", expected a scalar" + where);
                return;
            }
            findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("extra loss", loss), where));
        } catch (RuntimeException e) {
            findings.fail("extra loss threw " + Findings.describe(e) + where);
        }
    }

    private static String suffix(String message, String where) {
        return message == null ? null : message + where;
    }
}
