package dev.kiln.testkit;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/** Compresses a small random matrix (and an all-zero one) and checks the {@link Compressor} contract. */
final class CompressChecks {
    static final Shape SHAPE = new Shape(16, 32);
    static final String NAME = "layers.0.mlp.weight";

    private final Findings findings;
    private final long seed;

    CompressChecks(Findings findings, long seed) {
        this.findings = findings;
        this.seed = seed;
    }

    void run(Compressor compressor) {
        if (findings.on(TechniqueContract.APPLIES_TO)) {
            try {
                if (!compressor.appliesTo(NAME, SHAPE)) {
                    findings.fail("appliesTo('" + NAME + "', " + SHAPE + ") is false for a plain weight matrix");
                }
            } catch (RuntimeException e) {
                findings.fail("appliesTo threw " + Findings.describe(e));
            }
        }
        float[] weight = Host.gaussian(new Random(seed), (int) SHAPE.size());
        try (NDManager manager = NDManager.newBaseManager()) {
            one(compressor, manager, weight, "", true);
            if (findings.on(TechniqueContract.ZERO_INPUTS)) {
                one(compressor, manager, new float[weight.length], " (all-zero weight)", false);
            }
        }
    }

    private void one(Compressor compressor, NDManager manager, float[] weight, String note, boolean full) {
        String where = " on a random " + SHAPE + " float32 weight" + note;
        try (NDManager scope = manager.newSubManager()) {
            NDArray input = scope.create(weight, SHAPE);
            CompressedTensor out;
            try {
                out = compressor.compress(NAME, input);
            } catch (RuntimeException e) {
                findings.fail("compress threw " + Findings.describe(e) + where);
                return;
            }
            if (out == null || out.reconstruction() == null || out.stored() == null) {
                findings.fail("compress returned " + (out == null ? "null" : "null parts") + where);
                return;
            }
            NDArray reconstruction = out.reconstruction();
            if (findings.on(TechniqueContract.SHAPE) && !reconstruction.getShape().equals(SHAPE)) {
                findings.fail("reconstruction has shape " + reconstruction.getShape() + ", expected " + SHAPE + where);
            }
            if (findings.on(TechniqueContract.DTYPE) && reconstruction.getDataType() != DataType.FLOAT32) {
                findings.fail("reconstruction is " + reconstruction.getDataType() + ", expected float32" + where);
            }
            findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("reconstruction", reconstruction), where));
            for (Map.Entry<String, NDArray> stored : out.stored().entrySet()) {
                findings.failIf(TechniqueContract.FINITE, suffix(Host.nonFinite("stored tensor '"
                        + stored.getKey() + "'", stored.getValue()), where));
            }
            if (findings.on(TechniqueContract.STORED_BYTES) && out.storedBytes() <= 0) {
                findings.fail("storedBytes() is " + out.storedBytes() + ", expected > 0" + where);
            }
            if (findings.on(TechniqueContract.INPUTS_UNCHANGED)
                    && Host.firstDifference(Host.values(input), weight) >= 0) {
                findings.fail("compress modified its input" + where);
            }
            if (full && findings.on(TechniqueContract.DETERMINISM)) {
                determinism(compressor, scope, weight, out, where);
            }
        }
    }

    private void determinism(Compressor compressor, NDManager scope, float[] weight, CompressedTensor first,
            String where) {
        CompressedTensor again;
        try {
            again = compressor.compress(NAME, scope.create(weight, SHAPE));
        } catch (RuntimeException e) {
            findings.fail("second compress threw " + Findings.describe(e) + where);
            return;
        }
        Map<String, double[]> a = snapshot(first);
        Map<String, double[]> b = snapshot(again);
        if (!a.keySet().equals(b.keySet())) {
            findings.fail("not deterministic: stored keys " + a.keySet() + " then " + b.keySet() + where);
            return;
        }
        for (String key : a.keySet()) {
            int at = Host.firstDifference(b.get(key), a.get(key), 0);
            if (at >= 0) {
                findings.fail("not deterministic: " + key + " differs at flat index " + at + " between two runs"
                        + where);
            }
        }
    }

    private static Map<String, double[]> snapshot(CompressedTensor tensor) {
        Map<String, double[]> values = new TreeMap<>();
        values.put("reconstruction", Host.values(tensor.reconstruction()));
        for (Map.Entry<String, NDArray> stored : tensor.stored().entrySet()) {
            values.put("stored tensor '" + stored.getKey() + "'", Host.values(stored.getValue()));
        }
        return values;
    }

    private static String suffix(String message, String where) {
        return message == null ? null : message + where;
    }
}
