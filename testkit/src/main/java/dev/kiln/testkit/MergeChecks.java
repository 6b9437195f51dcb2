package dev.kiln.testkit;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;

/** Runs a merge method on small random tensors and checks the {@link MergeMethod} contract. */
final class MergeChecks {
    static final Shape SHAPE = new Shape(6, 7);
    static final String NAME = "layers.0.weight";
    private static final double TOLERANCE = 1e-5;

    private final Findings findings;
    private final long seed;
    private final int[] modelCounts;

    MergeChecks(Findings findings, long seed, int[] modelCounts) {
        this.findings = findings;
        this.seed = seed;
        this.modelCounts = modelCounts;
    }

    /** Host values of one merge: base (or null), models and their per-element statistics (a Fisher stand-in). */
    private record Data(float[] base, List<float[]> models, List<float[]> statistics, String describe) {
        MergeInput input(NDManager manager, boolean withBase, long seed) {
            List<ModelTensor> tensors = new ArrayList<>();
            for (int i = 0; i < models.size(); i++) {
                tensors.add(new ModelTensor(manager.create(models.get(i), SHAPE), 1.0, Map.of(),
                        manager.create(statistics.get(i), SHAPE)));
            }
            NDArray baseArray = withBase ? manager.create(base, SHAPE) : null;
            return new MergeInput(NAME, baseArray, tensors, new SplittableRandom(seed));
        }
    }

    private Data random(int count, String kind) {
        Random random = new Random(seed * 131 + count);
        int size = (int) SHAPE.size();
        float[] base = Host.gaussian(random, size);
        List<float[]> models = new ArrayList<>();
        List<float[]> statistics = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            float[] model;
            if (kind.equals("identical") && i > 0) {
                model = models.get(0).clone();
            } else if (kind.equals("zero-task-vectors")) {
                model = base.clone();
            } else {
                model = Host.gaussian(random, size);
            }
            models.add(model);
            float[] statistic = Host.gaussian(random, size);
            for (int j = 0; j < size; j++) {
                statistic[j] = Math.abs(statistic[j]) + 0.1f;
            }
            statistics.add(statistic);
        }
        String describe = count + " model" + (count == 1 ? "" : "s") + (kind.isEmpty() ? "" : ", " + kind);
        return new Data(base, models, statistics, describe);
    }

    void run(MergeMethod method) {
        boolean needsBase;
        try {
            needsBase = method.requiresBase();
        } catch (RuntimeException e) {
            findings.fail("requiresBase() threw " + Findings.describe(e));
            return;
        }
        try (NDManager manager = NDManager.newBaseManager()) {
            for (int count : modelCounts) {
                Data data = random(count, "");
                double[] out = one(method, manager, data, needsBase, true);
                if (out == null) {
                    continue;
                }
                if (findings.on(TechniqueContract.IDENTICAL_MODELS)) {
                    Data same = random(count, "identical");
                    double[] merged = one(method, manager, same, needsBase, false);
                    expectEqual(merged, same.models().get(0), same, "the model");
                }
                if (needsBase && findings.on(TechniqueContract.ZERO_TASK_VECTORS)) {
                    Data zero = random(count, "zero-task-vectors");
                    double[] merged = one(method, manager, zero, true, false);
                    expectEqual(merged, zero.base(), zero, "the base");
                }
                if (needsBase && findings.on(TechniqueContract.MISSING_BASE)) {
                    missingBase(method, manager, data);
                }
            }
        }
    }

    private void expectEqual(double[] merged, float[] expected, Data data, String what) {
        if (merged == null) {
            return;
        }
        double[] wide = new double[expected.length];
        for (int i = 0; i < wide.length; i++) {
            wide[i] = expected[i];
        }
        int at = Host.firstDifference(merged, wide, TOLERANCE);
        if (at >= 0) {
            findings.fail("merging " + data.describe() + " gave " + merged[at] + " at flat index " + at
                    + ", expected " + what + "'s " + wide[at] + " (within 1e-5)");
        }
    }

    private void missingBase(MergeMethod method, NDManager manager, Data data) {
        try (NDManager scope = manager.newSubManager()) {
            method.merge(data.input(scope, false, seed));
            findings.fail("requiresBase() is true but merging " + data.describe()
                    + " without a base did not throw a KilnException");
        } catch (KilnException expected) {
            // the contract: a clear, user-facing error
        } catch (RuntimeException e) {
            findings.fail("merging " + data.describe() + " without the required base threw "
                    + Findings.describe(e) + " instead of a KilnException");
        }
    }

    /** Merges once (twice with the determinism check); returns the host result, or null after a violation. */
    private double[] one(MergeMethod method, NDManager manager, Data data, boolean withBase, boolean full) {
        String where = " (" + data.describe() + (withBase ? ", with base" : "") + ")";
        try (NDManager scope = manager.newSubManager()) {
            MergeInput input = data.input(scope, withBase, seed);
            NDArray out;
            try {
                out = method.merge(input);
            } catch (RuntimeException e) {
                findings.fail("merge threw " + Findings.describe(e) + where);
                return null;
            }
            if (out == null) {
                findings.fail("merge returned null" + where);
                return null;
            }
            if (findings.on(TechniqueContract.SHAPE) && !out.getShape().equals(SHAPE)) {
                findings.fail("merged tensor has shape " + out.getShape() + ", expected " + SHAPE + where);
                return null;
            }
            if (full && findings.on(TechniqueContract.DTYPE) && out.getDataType() != DataType.FLOAT32) {
                findings.fail("merged tensor is " + out.getDataType() + ", expected float32" + where);
            }
            double[] values = Host.values(out);
            findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("merged tensor", out), where));
            if (findings.on(TechniqueContract.INPUTS_UNCHANGED)) {
                try {
                    unchanged(input, data, where);
                } catch (RuntimeException e) {
                    // Reading an input back fails when the method closed it, which the contract forbids too.
                    findings.fail("an input can no longer be read after merge (closed?): " + Findings.describe(e)
                            + where);
                }
            }
            if (full && findings.on(TechniqueContract.DETERMINISM)) {
                try {
                    double[] again = Host.values(method.merge(data.input(scope, withBase, seed)));
                    int at = Host.firstDifference(again, values, 0);
                    if (at >= 0) {
                        findings.fail("not deterministic: the same random seed gave " + again[at] + " then "
                                + values[at] + " at flat index " + at + where
                                + "; draw randomness from MergeInput.random()");
                    }
                } catch (RuntimeException e) {
                    findings.fail("second merge with the same seed threw " + Findings.describe(e) + where);
                }
            }
            return values;
        }
    }

    private void unchanged(MergeInput input, Data data, String where) {
        if (input.base() != null && Host.firstDifference(Host.values(input.base()), data.base()) >= 0) {
            findings.fail("merge modified the base tensor" + where);
        }
        for (int i = 0; i < input.models().size(); i++) {
            ModelTensor model = input.models().get(i);
            if (Host.firstDifference(Host.values(model.tensor()), data.models().get(i)) >= 0) {
                findings.fail("merge modified the tensor of model " + i + where);
            }
            if (Host.firstDifference(Host.values(model.statistic()), data.statistics().get(i)) >= 0) {
                findings.fail("merge modified the statistic of model " + i + where);
            }
        }
    }

    private static String suffix(String message, String where) {
        return message == null ? null : message + where;
    }
}
