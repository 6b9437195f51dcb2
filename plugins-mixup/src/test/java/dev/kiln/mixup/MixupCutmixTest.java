package dev.kiln.mixup;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixedBatch;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class MixupCutmixTest {
    private static final int N = 6;
    private static final int C = 2;
    private static final int H = 5;
    private static final int W = 8;
    private static final int PER = C * H * W;
    private NDManager manager;

    @BeforeEach
    void open() {
        manager = NDManager.newBaseManager();
    }

    @AfterEach
    void close() {
        manager.close();
    }

    private NDArray labels() {
        return manager.create(new long[] {0, 1, 2, 3, 4, 5});
    }

    /** How sample i was mixed: "none", "cut" (some pixels replaced exactly, others untouched) or "blend". */
    private static String kind(double[] before, double[] after, int i) {
        int same = 0;
        int partnerCopy = 0;
        int partner = Fixtures.partner(i, N);
        for (int p = 0; p < PER; p++) {
            if (before[i * PER + p] == after[i * PER + p]) {
                same++;
            } else if (before[partner * PER + p] == after[i * PER + p]) {
                partnerCopy++;
            }
        }
        if (same == PER) {
            return "none";
        }
        return same + partnerCopy == PER ? "cut" : "blend";
    }

    @Test
    void probZeroNeverMixesButStillSmooths() {
        NDArray x = Fixtures.images(manager, new Random(1), N, C, H, W);
        MixedBatch out = Fixtures.create("mixup-cutmix", Map.of("prob", "0", "label-smoothing", "0.1"))
                .mix(new Batch(x, labels(), N), Fixtures.context(3));
        assertArrayEquals(Fixtures.host(x), Fixtures.host(out.inputs()));
        double[][] t = Fixtures.rows(out.targets());
        for (int i = 0; i < N; i++) {
            for (int c = 0; c < N; c++) {
                assertEquals(c == i ? 0.9 + 0.1 / N : 0.1 / N, t[i][c], 1e-6);
            }
        }
    }

    @Test
    void switchProbChoosesTheOperation() {
        NDArray x = Fixtures.images(manager, new Random(2), N, C, H, W);
        double[] before = Fixtures.host(x);
        for (long seed = 0; seed < 8; seed++) {
            double[] cut = Fixtures.host(Fixtures.create("mixup-cutmix", Map.of("switch-prob", "1"))
                    .mix(new Batch(x, labels(), N), Fixtures.context(seed)).inputs());
            double[] blend = Fixtures.host(Fixtures.create("mixup-cutmix", Map.of("switch-prob", "0"))
                    .mix(new Batch(x, labels(), N), Fixtures.context(seed)).inputs());
            assertTrue(!kind(before, cut, 0).equals("blend"), "switch-prob 1 always cuts");
            assertEquals("blend", kind(before, blend, 0), "switch-prob 0 always blends");
        }
    }

    @Test
    void elemModeMixesEachSampleItsOwnWayAndTargetsMatchPixels() {
        NDArray x = Fixtures.images(manager, new Random(3), N, C, H, W);
        double[] before = Fixtures.host(x);
        int cuts = 0;
        int blends = 0;
        for (long seed = 0; seed < 10; seed++) {
            MixedBatch out = Fixtures.create("mixup-cutmix", Map.of("mode", "elem", "prob", "0.8"))
                    .mix(new Batch(x, labels(), N), Fixtures.context(seed));
            double[] after = Fixtures.host(out.inputs());
            double[][] t = Fixtures.rows(out.targets());
            for (int i = 0; i < N; i++) {
                int partner = Fixtures.partner(i, N);
                double lam = t[i][i];
                switch (kind(before, after, i)) {
                    case "cut": {
                        cuts++;
                        int changed = 0;
                        for (int p = 0; p < PER; p++) {
                            changed += before[i * PER + p] != after[i * PER + p] ? 1 : 0;
                        }
                        assertEquals(1 - lam, changed / (double) PER, 1e-6, "cut share");
                        break;
                    }
                    case "blend":
                        blends++;
                        for (int p = 0; p < PER; p++) {
                            assertEquals(lam * before[i * PER + p] + (1 - lam) * before[partner * PER + p],
                                    after[i * PER + p], 1e-5);
                        }
                        break;
                    default:
                        assertEquals(1.0, lam, 1e-6, "untouched sample keeps its label");
                }
            }
        }
        assertTrue(cuts > 5 && blends > 5, cuts + " cuts, " + blends + " blends");
    }
}
