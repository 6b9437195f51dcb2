package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Registry;
import dev.kiln.spi.compress.Compressor;
import java.util.Map;
import java.util.Random;

/** Shared test fixtures: one engine manager, the registry as a user reaches it, random inputs. */
final class Support {
    static final NDManager MANAGER = NDManager.newBaseManager();
    static final Registry REGISTRY = Registry.discover(Support.class.getClassLoader());

    private Support() {
    }

    static Compressor compressor(String id, Map<String, String> parameters) {
        return REGISTRY.create(Kind.COMPRESS, Compressor.class, id, parameters);
    }

    static float[] gaussian(Random random, int count, double std) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) (random.nextGaussian() * std);
        }
        return values;
    }

    static NDArray array(float[] values, long... shape) {
        return MANAGER.create(values, new Shape(shape));
    }

    /** Flat indices of the k largest |v|, ties by lower index, as a membership array: an independent selection. */
    static boolean[] referenceKeep(double[] magnitude, int from, int length, int k) {
        Integer[] order = new Integer[length];
        for (int i = 0; i < length; i++) {
            order[i] = i;
        }
        java.util.Arrays.sort(order, (a, b) -> {
            int byValue = Double.compare(magnitude[from + b], magnitude[from + a]);
            return byValue != 0 ? byValue : Integer.compare(a, b);
        });
        boolean[] keep = new boolean[length];
        for (int i = 0; i < k; i++) {
            keep[order[i]] = true;
        }
        return keep;
    }

    static double[] abs(float[] values) {
        double[] out = new double[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = Math.abs((double) values[i]);
        }
        return out;
    }
}
