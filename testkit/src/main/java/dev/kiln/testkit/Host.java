package dev.kiln.testkit;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.util.Random;

/**
 * Host-side copies and comparisons. The kit judges techniques on Java arrays on purpose: a check written in the
 * same NDArray calls as the technique could share its bugs.
 */
final class Host {
    private Host() {
    }

    static double[] values(NDArray array) {
        return array.toType(DataType.FLOAT64, false).toDoubleArray();
    }

    static float[] gaussian(Random random, int size) {
        float[] values = new float[size];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextGaussian();
        }
        return values;
    }

    static NDArray create(NDManager manager, float[] values, Shape shape) {
        return manager.create(values, shape);
    }

    /** Index of the first NaN or infinite value, or -1. */
    static int firstNonFinite(double[] values) {
        for (int i = 0; i < values.length; i++) {
            if (!Double.isFinite(values[i])) {
                return i;
            }
        }
        return -1;
    }

    /** A message about the first non-finite value of {@code array} named {@code what}, or null when all are finite. */
    static String nonFinite(String what, NDArray array) {
        if (!array.getDataType().isFloating()) {
            return null;
        }
        double[] values = values(array);
        int at = firstNonFinite(values);
        return at < 0 ? null : what + " contain " + values[at] + " at flat index " + at + " of " + array.getShape();
    }

    /** Index of the first difference beyond {@code tolerance} (relative above magnitude 1), or -1. */
    static int firstDifference(double[] actual, double[] expected, double tolerance) {
        if (actual.length != expected.length) {
            return 0;
        }
        for (int i = 0; i < actual.length; i++) {
            double limit = tolerance * Math.max(1.0, Math.abs(expected[i]));
            if (!(Math.abs(actual[i] - expected[i]) <= limit) && !Double.valueOf(actual[i]).equals(expected[i])) {
                return i;
            }
        }
        return -1;
    }

    static int firstDifference(double[] actual, float[] expected) {
        double[] widened = new double[expected.length];
        for (int i = 0; i < expected.length; i++) {
            widened[i] = expected[i];
        }
        return firstDifference(actual, widened, 0);
    }
}
