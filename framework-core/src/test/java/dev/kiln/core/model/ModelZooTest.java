package dev.kiln.core.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.ParameterStore;
import dev.kiln.spi.KilnException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ModelZooTest {

    private static NDArray logits(KilnModel model, NDManager manager, NDArray x) {
        return model.forward(new ParameterStore(manager, false), x, false);
    }

    @Test
    void shapesAndStableNames() {
        try (NDManager manager = NDManager.newBaseManager()) {
            NDArray x = manager.randomNormal(new Shape(3, 1, 28, 28));
            KilnModel cnn = ModelZoo.build("cnn", Map.of("width", "8", "hidden", "16"), new Shape(1, 28, 28), 10)
                    .initialize(manager, 1);
            assertEquals(new Shape(3, 10), logits(cnn, manager, x).getShape());
            assertEquals(List.of("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                    "conv2.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var", "fc1.weight",
                    "fc1.bias", "fc.weight", "fc.bias"), new ArrayList<>(cnn.parameters().keySet()));
            assertEquals(new Shape(8, 1, 5, 5), cnn.parameters().get("conv1.weight").getArray().getShape());
            assertEquals(new Shape(16, 8, 5, 5), cnn.parameters().get("conv2.weight").getArray().getShape());
            assertEquals(new Shape(16, 16 * 7 * 7), cnn.parameters().get("fc1.weight").getArray().getShape());
            // 8*25 + 4*8 + 16*8*25 + 4*16 + 784*16+16 + 16*10+10
            assertEquals(200 + 32 + 3200 + 64 + 12560 + 170, cnn.parameterCount());

            KilnModel noBn = ModelZoo.build("cnn", Map.of("width", "4", "hidden", "0", "batch-norm", "false"),
                    new Shape(3, 32, 32), 5).initialize(manager, 1);
            assertEquals(List.of("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"),
                    new ArrayList<>(noBn.parameters().keySet()));
            assertEquals(new Shape(2, 5), logits(noBn, manager, manager.randomNormal(new Shape(2, 3, 32, 32)))
                    .getShape());

            KilnModel mlp = ModelZoo.build("mlp", Map.of("hidden", "32, 16"), new Shape(1, 28, 28), 10)
                    .initialize(manager, 1);
            assertEquals(List.of("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight", "head.bias"),
                    new ArrayList<>(mlp.parameters().keySet()));
            assertEquals(new Shape(3, 10), logits(mlp, manager, x).getShape());

            KilnModel resnet = ModelZoo.build("resnet", Map.of("width", "4", "blocks", "2"), new Shape(1, 28, 28),
                    10).initialize(manager, 1);
            assertEquals(new Shape(3, 10), logits(resnet, manager, x).getShape());
            Map<String, ?> params = resnet.parameters();
            assertTrue(params.containsKey("stem.weight"));
            assertTrue(params.containsKey("stage1.block1.bn1.running_var"));
            assertTrue(params.containsKey("stage2.block1.shortcut.weight"));
            assertFalse(params.containsKey("stage1.block1.shortcut.weight"));
            assertFalse(params.containsKey("stage2.block2.shortcut.weight"));
            assertTrue(params.containsKey("stage3.block2.conv2.weight"));
            assertEquals(new Shape(16, 8, 1, 1), resnet.parameters().get("stage3.block1.shortcut.weight").getArray()
                    .getShape());
            assertEquals(new Shape(10, 16), resnet.parameters().get("fc.weight").getArray().getShape());
            assertEquals(new Shape(3, 7), logits(ModelZoo.build("resnet", Map.of("width", "2"), new Shape(3, 32, 32),
                    7).initialize(manager, 1), manager, manager.randomNormal(new Shape(3, 3, 32, 32))).getShape());
        }
    }

    @Test
    void mlpForwardMatchesFloat64Reference() {
        try (NDManager manager = NDManager.newBaseManager()) {
            KilnModel mlp = ModelZoo.build("mlp", Map.of("hidden", "5"), new Shape(2, 2, 2), 3).initialize(manager, 3);
            NDArray x = manager.randomNormal(new Shape(4, 2, 2, 2));
            float[] out = logits(mlp, manager, x).toFloatArray();
            float[] xv = x.toFloatArray();
            Map<String, NDArray> p = mlp.exportParameters(manager);
            float[] w1 = p.get("fc1.weight").toFloatArray();
            float[] b1 = p.get("fc1.bias").toFloatArray();
            float[] w2 = p.get("head.weight").toFloatArray();
            float[] b2 = p.get("head.bias").toFloatArray();
            for (int n = 0; n < 4; n++) {
                double[] h = new double[5];
                for (int j = 0; j < 5; j++) {
                    double s = b1[j];
                    for (int i = 0; i < 8; i++) {
                        s += (double) w1[j * 8 + i] * xv[n * 8 + i];
                    }
                    h[j] = Math.max(0, s);
                }
                for (int k = 0; k < 3; k++) {
                    double s = b2[k];
                    for (int j = 0; j < 5; j++) {
                        s += (double) w2[k * 5 + j] * h[j];
                    }
                    assertEquals(s, out[n * 3 + k], 1e-5);
                }
            }
        }
    }

    @Test
    void exportImportRoundTripAndSeededInit() {
        try (NDManager manager = NDManager.newBaseManager()) {
            Map<String, String> params = Map.of("width", "4", "hidden", "8");
            Shape sample = new Shape(1, 12, 12);
            KilnModel a = ModelZoo.build("cnn", params, sample, 4).initialize(manager, 7);
            KilnModel b = ModelZoo.build("cnn", params, sample, 4).initialize(manager, 8);
            KilnModel c = ModelZoo.build("cnn", params, sample, 4).initialize(manager, 7);
            Map<String, NDArray> exported = a.exportParameters(manager);
            assertArrayEquals(exported.get("conv1.weight").toFloatArray(),
                    c.exportParameters(manager).get("conv1.weight").toFloatArray());
            assertFalse(java.util.Arrays.equals(exported.get("conv1.weight").toFloatArray(),
                    b.exportParameters(manager).get("conv1.weight").toFloatArray()));
            // Make the running statistics non-trivial so their round trip is checked too.
            exported.get("bn1.running_mean").addi(0.25f);
            exported.get("bn2.running_var").muli(3f);
            NDArray x = manager.randomNormal(new Shape(2, 1, 12, 12));
            b.loadParameters(exported);
            Map<String, NDArray> back = b.exportParameters(manager);
            for (String name : exported.keySet()) {
                assertArrayEquals(exported.get(name).toFloatArray(), back.get(name).toFloatArray(), name);
                assertEquals(name, back.get(name).getName());
            }
            a.loadParameters(exported);
            assertArrayEquals(logits(a, manager, x).toFloatArray(), logits(b, manager, x).toFloatArray());
            // Exported copies are independent of the live parameters.
            b.parameters().get("fc.bias").getArray().addi(1f);
            assertArrayEquals(exported.get("fc.bias").toFloatArray(), back.get("fc.bias").toFloatArray());
        }
    }

    @Test
    void badInputFailsClearly() {
        KilnException e = assertThrows(KilnException.class,
                () -> ModelZoo.build("cnm", Map.of(), new Shape(1, 28, 28), 10));
        assertTrue(e.getMessage().contains("'cnm'") && e.getMessage().contains("cnn"), e.getMessage());
        e = assertThrows(KilnException.class,
                () -> ModelZoo.build("cnn", Map.of("widht", "3"), new Shape(1, 28, 28), 10));
        assertTrue(e.getMessage().contains("model 'cnn'") && e.getMessage().contains("'width'"), e.getMessage());
        e = assertThrows(KilnException.class,
                () -> ModelZoo.build("cnn", Map.of("width", "0"), new Shape(1, 28, 28), 10));
        assertTrue(e.getMessage().contains("'width'") && e.getMessage().contains("0"), e.getMessage());
        e = assertThrows(KilnException.class,
                () -> ModelZoo.build("mlp", Map.of("hidden", "64,x"), new Shape(1, 28, 28), 10));
        assertTrue(e.getMessage().contains("'hidden'") && e.getMessage().contains("'x'"), e.getMessage());
        e = assertThrows(KilnException.class,
                () -> ModelZoo.build("cnn", Map.of("kernel", "4"), new Shape(1, 28, 28), 10));
        assertTrue(e.getMessage().contains("'kernel'"), e.getMessage());
        try (NDManager manager = NDManager.newBaseManager()) {
            KilnModel m = ModelZoo.build("mlp", Map.of("hidden", "3"), new Shape(1, 2, 2), 2).initialize(manager, 1);
            Map<String, NDArray> p = new HashMap<>(m.exportParameters(manager));
            p.put("fc1.weight", manager.zeros(new Shape(4, 4)));
            e = assertThrows(KilnException.class, () -> m.loadParameters(p));
            assertTrue(e.getMessage().contains("'fc1.weight'") && e.getMessage().contains("(4, 4)"), e.getMessage());
            p.remove("fc1.weight");
            p.put("fc9.weight", manager.zeros(new Shape(3, 4)));
            e = assertThrows(KilnException.class, () -> m.loadParameters(p));
            assertTrue(e.getMessage().contains("fc1.weight") && e.getMessage().contains("fc9.weight"),
                    e.getMessage());
        }
    }
}
