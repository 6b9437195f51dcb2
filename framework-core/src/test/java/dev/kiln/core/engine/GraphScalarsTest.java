package dev.kiln.core.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The hazard GraphScalars exists for: a scalar operand that autograd keeps must still hold its value when backward
 * runs, even after the garbage collector has run and the freed memory has been handed out again.
 */
class GraphScalarsTest {

    @Test
    void scalarOperandsSurviveUntilBackward() throws InterruptedException {
        try (NDManager manager = NDManager.newBaseManager()) {
            for (int round = 0; round < 20; round++) {
                try (NDManager step = manager.newSubManager()) {
                    NDArray x = step.create(new float[] {1f, 2f, 3f, -4f});
                    x.setRequiresGradient(true);
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        // d/dx sum(0.75 * x^3 / 3) = 0.75 x^2
                        NDArray y = x.pow(GraphScalars.of(step, 3f)).mul(GraphScalars.of(step, 0.75f))
                                .div(GraphScalars.of(step, 3f)).sum();
                        reuseFreedNativeMemory();
                        gc.backward(y);
                    }
                    float[] grad = x.getGradient().toFloatArray();
                    float[] expected = {0.75f, 3f, 6.75f, 12f};
                    for (int i = 0; i < grad.length; i++) {
                        assertEquals(expected[i], grad[i], 1e-5f, "round " + round + " element " + i);
                    }
                }
            }
        }
    }

    /** Runs the collector and then fills fresh direct buffers with NaN, so freed scalars would read NaN. */
    private static void reuseFreedNativeMemory() throws InterruptedException {
        System.gc();
        Thread.sleep(20);
        List<ByteBuffer> garbage = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            ByteBuffer b = ByteBuffer.allocateDirect(4 * (1 + i % 4)).order(ByteOrder.nativeOrder());
            while (b.remaining() >= 4) {
                b.putFloat(Float.NaN);
            }
            garbage.add(b);
        }
        garbage.clear();
    }
}
