package dev.kiln.compress;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.compress.CompressedTensor;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class Int8Test {

    @Test
    void roundTripErrorIsAtMostHalfAScaleStep() {
        Random random = new Random(21);
        int rows = 7;
        int cols = 12;
        float[] w = Support.gaussian(random, rows * cols, 0.1);
        for (int j = 0; j < cols; j++) {
            w[3 * cols + j] = 0f;
        }
        w[5 * cols + 4] = -0.9f;
        CompressedTensor out = Support.compressor("int8", Map.of()).compress("fc.weight", Support.array(w, rows, cols));
        assertEquals(DataType.INT8, out.stored().get(".q").getDataType());
        assertEquals(new Shape(rows, cols), out.stored().get(".q").getShape());
        assertEquals(new Shape(rows), out.stored().get(".scale").getShape());
        byte[] q = out.stored().get(".q").toByteArray();
        float[] scale = out.stored().get(".scale").toFloatArray();
        float[] recon = out.reconstruction().toFloatArray();
        int exactMatches = 0;
        for (int r = 0; r < rows; r++) {
            double max = 0;
            for (int j = 0; j < cols; j++) {
                max = Math.max(max, Math.abs((double) w[r * cols + j]));
            }
            double expectedScale = max / 127;
            assertEquals(expectedScale, scale[r], 1e-6 * expectedScale, "scale of row " + r);
            for (int j = 0; j < cols; j++) {
                int i = r * cols + j;
                assertTrue(q[i] >= -127 && q[i] <= 127, "q out of range: " + q[i]);
                assertTrue(!Float.isNaN(recon[i]), "NaN at " + i);
                assertTrue(Math.abs(recon[i] - w[i]) <= scale[r] / 2 + 1e-7,
                        "row " + r + " col " + j + ": |" + recon[i] + " - " + w[i] + "| > " + scale[r] / 2);
                assertEquals((double) q[i] * scale[r], recon[i], 1e-7, "reconstruction is q * scale");
                long reference = expectedScale == 0 ? 0 : Math.round(w[i] / expectedScale);
                assertTrue(Math.abs(q[i] - reference) <= 1, "q " + q[i] + " vs " + reference);
                exactMatches += q[i] == reference ? 1 : 0;
            }
        }
        assertTrue(exactMatches >= rows * cols - 2, "rounding disagrees with the reference too often");
        assertEquals(0f, scale[3], 0f, "zero row keeps scale 0");
        assertEquals(-127, q[5 * cols + 4], "the largest magnitude maps to the end of the range");
        assertTrue(out.storedBytes() < 4L * rows * cols,
                out.storedBytes() + " bytes stored for " + 4 * rows * cols + " dense");
    }

    @Test
    void convKernelsGetOneScalePerOutputChannel() {
        Random random = new Random(22);
        float[] w = Support.gaussian(random, 5 * 3 * 2 * 2, 1.0);
        CompressedTensor out = Support.compressor("int8", Map.of()).compress("conv.weight",
                Support.array(w, 5, 3, 2, 2));
        assertEquals(new Shape(5), out.stored().get(".scale").getShape());
        assertEquals(new Shape(5, 3, 2, 2), out.reconstruction().getShape());
        float[] scale = out.stored().get(".scale").toFloatArray();
        float[] recon = out.reconstruction().toFloatArray();
        for (int i = 0; i < w.length; i++) {
            assertTrue(Math.abs(recon[i] - w[i]) <= scale[i / 12] / 2 + 1e-6);
        }
    }
}
