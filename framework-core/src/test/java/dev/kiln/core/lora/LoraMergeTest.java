package dev.kiln.core.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.kiln.core.lora.LoraFixtures.Factors;
import dev.kiln.core.lora.LoraFixtures.Mat;
import dev.kiln.core.safetensors.DType;
import dev.kiln.core.safetensors.SafetensorsReader;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.merge.MergeInput;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.merge.ModelTensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LoraMergeTest {
    @TempDir
    Path dir;

    private static final String Q = "model.layers.0.self_attn.q_proj";
    private static final String V = "model.layers.0.self_attn.v_proj";
    private static final String UP = "model.layers.0.mlp.up_proj";

    private static void assertClose(Mat want, float[] got, double tol, String what) {
        assertEquals(want.v().length, got.length, what + " size");
        for (int i = 0; i < got.length; i++) {
            double t = tol * Math.max(1, Math.abs(want.v()[i]));
            assertEquals(want.v()[i], got[i], t, what + "[" + i + "]");
        }
    }

    private static List<String> files(Path folder) throws Exception {
        if (!Files.exists(folder)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(folder)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    private Map<String, Mat> base(Random r) {
        Map<String, Mat> w = new LinkedHashMap<>();
        w.put(Q + ".weight", Mat.random(r, 6, 5, 1));
        w.put(V + ".weight", Mat.random(r, 4, 5, 1));
        w.put("model.norm.weight", Mat.random(r, 1, 5, 1));
        return w;
    }

    @Test
    void mergeIntoBaseEqualsWPlusWeightTimesScalingTimesBA() throws Exception {
        Random r = new Random(11);
        Map<String, Mat> w = base(r);
        Path basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F32, w);
        Factors q = Factors.random(r, Q, 3, 5, 6);
        Factors v = Factors.random(r, V, 3, 5, 4);
        Path adapterDir = LoraFixtures.writeAdapter(dir.resolve("ad"), 3, 6.0, false, false, null, q, v);
        Path out = dir.resolve("out/merged.safetensors");
        double weight = 0.7;
        try (LoraAdapter adapter = LoraAdapter.read(adapterDir)) {
            assertEquals(List.of(Q, V), adapter.moduleNames());
            assertEquals(2.0, adapter.modules().get(Q).scaling(), 0);
            Map<String, Object> report = LoraMerge.mergeIntoBase(basePath, adapter, weight, out);
            assertEquals(2, report.get("updated"));
        }
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            assertEquals(List.of(Q + ".weight", V + ".weight", "model.norm.weight"), got.names());
            for (Factors f : List.of(q, v)) {
                Mat want = w.get(f.module() + ".weight").plus(f.b().times(f.a()).scale(2.0 * weight));
                assertClose(want, got.readFloats(f.module() + ".weight"), 1e-5, f.module());
            }
            // Untargeted tensors are copied bit for bit.
            assertArrayEquals(w.get("model.norm.weight").floats(), got.readFloats("model.norm.weight"));
            assertEquals("sum", got.metadata().get("kiln.lora.combination"));
        }
        assertEquals(List.of("merged.safetensors"), files(out.getParent()));
    }

    @Test
    void rsLoraScalingAndFanInFanOutTransposeTheUpdate() throws Exception {
        Random r = new Random(12);
        // GPT-2 Conv1D style: the base stores c_attn as (in x out) = (5 x 7).
        Mat wAttn = Mat.random(r, 5, 7, 1);
        Path basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F32, Map.of("h.0.attn.c_attn.weight", wAttn));
        Factors f = Factors.random(r, "h.0.attn.c_attn", 4, 5, 7);
        Path adapterDir = LoraFixtures.writeAdapter(dir.resolve("ad"), 4, 3.0, true, true, null, f);
        Path out = dir.resolve("merged.safetensors");
        try (LoraAdapter adapter = LoraAdapter.read(adapterDir)) {
            // rsLoRA: alpha / sqrt(r) = 3 / 2.
            assertEquals(1.5, adapter.modules().get("h.0.attn.c_attn").scaling(), 0);
            LoraMerge.mergeIntoBase(basePath, adapter, -1.25, out);
        }
        Mat want = wAttn.plus(f.b().times(f.a()).transpose().scale(1.5 * -1.25));
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            assertClose(want, got.readFloats("h.0.attn.c_attn.weight"), 1e-5, "c_attn");
        }
    }

    @Test
    void mergeIntoAHalfPrecisionBaseKeepsItsDtype() throws Exception {
        Random r = new Random(13);
        Map<String, Mat> w = base(r);
        Path basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F16, w);
        Factors q = Factors.random(r, Q, 2, 5, 6);
        Path adapterDir = LoraFixtures.writeAdapter(dir.resolve("ad"), 2, 4.0, false, false, null, q);
        Path out = dir.resolve("merged.safetensors");
        try (LoraAdapter adapter = LoraAdapter.read(adapterDir)) {
            LoraMerge.mergeIntoBase(basePath, adapter, 1.0, out);
        }
        Mat stored;
        try (SafetensorsReader in = SafetensorsReader.open(basePath)) {
            stored = Mat.of(6, 5, in.readFloats(Q + ".weight"));
        }
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            assertEquals(DType.F16, got.info(Q + ".weight").dtype());
            assertEquals(DType.F16, got.info("model.norm.weight").dtype());
            // F16 keeps 11 significant bits: relative rounding error at most 2^-11.
            assertClose(stored.plus(q.b().times(q.a()).scale(2.0)), got.readFloats(Q + ".weight"), 1e-3, "q");
        }
    }

    @Test
    void catHasRankSumAndItsProductIsExactlyTheWeightedSumOfUpdates() throws Exception {
        Random r = new Random(14);
        Factors q1 = Factors.random(r, Q, 2, 5, 6);
        Factors v1 = Factors.random(r, V, 2, 5, 4);
        Factors q2 = Factors.random(r, Q, 3, 5, 6);
        Factors up2 = Factors.random(r, UP, 3, 5, 8);
        Path a1 = LoraFixtures.writeAdapter(dir.resolve("a1"), 2, 8.0, false, false, null, q1, v1);
        Path a2 = LoraFixtures.writeAdapter(dir.resolve("a2"), 3, 6.0, true, false, null, q2, up2);
        double w1 = 0.6;
        double w2 = -1.3;
        double s1 = 8.0 / 2;
        double s2 = 6.0 / Math.sqrt(3);
        Path out = dir.resolve("cat");
        try (LoraAdapter ad1 = LoraAdapter.read(a1); LoraAdapter ad2 = LoraAdapter.read(a2)) {
            assertEquals(5, LoraMerge.cat(List.of(ad1, ad2), List.of(w1, w2), out));
        }
        Map<String, Mat> want = new LinkedHashMap<>();
        want.put(Q, q1.b().times(q1.a()).scale(w1 * s1).plus(q2.b().times(q2.a()).scale(w2 * s2)));
        want.put(V, v1.b().times(v1.a()).scale(w1 * s1));
        want.put(UP, up2.b().times(up2.a()).scale(w2 * s2));
        Map<String, Integer> ranks = Map.of(Q, 5, V, 2, UP, 3);
        // Read back through the same validating reader a user would use: config and shapes must agree.
        try (LoraAdapter cat = LoraAdapter.read(out); NDManager manager = NDManager.newBaseManager()) {
            assertEquals(5, cat.r());
            assertFalse(cat.useRslora());
            assertEquals(List.of(Q, V, UP), cat.moduleNames());
            for (String module : want.keySet()) {
                LoraAdapter.Module m = cat.modules().get(module);
                assertEquals(ranks.get(module), m.rank(), module);
                assertEquals(1.0, m.scaling(), 0, module + " scaling");
                Mat a = Mat.of(m.rank(), (int) m.in(), cat.loraA(m, manager).toFloatArray());
                Mat b = Mat.of((int) m.out(), m.rank(), cat.loraB(m, manager).toFloatArray());
                // The float64 product of the stored factors, so only float32 storage of w*s*A is tested.
                Mat product = b.times(a);
                for (int i = 0; i < product.v().length; i++) {
                    assertEquals(want.get(module).v()[i], product.v()[i], 1e-6, module + "[" + i + "]");
                }
                assertClose(want.get(module), cat.delta(m, manager).toFloatArray(), 1e-5, module + " delta");
            }
            var targets = cat.config().get("target_modules");
            assertEquals("[\"q_proj\",\"v_proj\",\"up_proj\"]", targets.toString());
            assertEquals(2, cat.config().get("rank_pattern").get(V).asInt());
            assertEquals(3.0, cat.config().get("alpha_pattern").get(UP).asDouble(), 0);
        }
    }

    /** TIES on dense updates, in NDArray ops: per-tensor top-k trim, weighted sign election, disjoint mean. */
    static final class LocalTies implements MergeMethod {
        final double density;

        LocalTies(double density) {
            this.density = density;
        }

        @Override
        public NDArray merge(MergeInput input) {
            NDArray numerator = null;
            NDArray count = null;
            List<NDArray> trimmed = new ArrayList<>();
            NDArray weightedSum = null;
            for (ModelTensor m : input.models()) {
                NDArray tau = m.tensor().sub(input.base());
                long n = tau.size();
                long k = Math.max(1, Math.round(density * n));
                NDArray sorted = tau.abs().flatten().sort();
                float threshold = sorted.getFloat(n - k);
                NDArray kept = tau.mul(tau.abs().gte(threshold).toType(tau.getDataType(), false));
                trimmed.add(kept);
                NDArray weighted = kept.mul((float) m.weight());
                weightedSum = weightedSum == null ? weighted : weightedSum.add(weighted);
            }
            NDArray elected = weightedSum.gte(0).toType(weightedSum.getDataType(), false).mul(2).sub(1);
            for (int i = 0; i < trimmed.size(); i++) {
                NDArray kept = trimmed.get(i);
                NDArray agree = kept.neq(0).logicalAnd(kept.sign().eq(elected)).toType(kept.getDataType(), false);
                NDArray term = kept.mul(agree).mul((float) input.models().get(i).weight());
                numerator = numerator == null ? term : numerator.add(term);
                count = count == null ? agree : count.add(agree);
            }
            return input.base().add(numerator.div(count.maximum(1)));
        }

        @Override
        public boolean requiresBase() {
            return true;
        }
    }

    /** The same TIES on float64 arrays. */
    static double[] tiesReference(List<double[]> taus, double[] weights, double density) {
        int n = taus.get(0).length;
        List<double[]> trimmed = new ArrayList<>();
        double[] sum = new double[n];
        for (int m = 0; m < taus.size(); m++) {
            double[] tau = taus.get(m);
            double[] mags = new double[n];
            for (int i = 0; i < n; i++) {
                mags[i] = Math.abs(tau[i]);
            }
            java.util.Arrays.sort(mags);
            long k = Math.max(1, Math.round(density * n));
            double thr = mags[(int) (n - k)];
            double[] kept = new double[n];
            for (int i = 0; i < n; i++) {
                kept[i] = Math.abs(tau[i]) >= thr ? tau[i] : 0;
                sum[i] += weights[m] * kept[i];
            }
            trimmed.add(kept);
        }
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            double sign = sum[i] >= 0 ? 1 : -1;
            double num = 0;
            int agree = 0;
            for (int m = 0; m < taus.size(); m++) {
                double x = trimmed.get(m)[i];
                if (x != 0 && Math.signum(x) == sign) {
                    num += weights[m] * x;
                    agree++;
                }
            }
            out[i] = num / Math.max(1, agree);
        }
        return out;
    }

    @Test
    void tiesOnDenseUpdatesEqualsTheReferenceAppliedToTheDeltas() throws Exception {
        Random r = new Random(15);
        Map<String, Mat> w = base(r);
        Path basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F32, w);
        Factors q1 = Factors.random(r, Q, 2, 5, 6);
        Factors q2 = Factors.random(r, Q, 2, 5, 6);
        Factors v2 = Factors.random(r, V, 2, 5, 4);
        Path a1 = LoraFixtures.writeAdapter(dir.resolve("a1"), 2, 4.0, false, false, null, q1);
        Path a2 = LoraFixtures.writeAdapter(dir.resolve("a2"), 2, 2.0, false, false, null, q2, v2);
        double[] weights = {1.0, 0.5};
        double density = 0.4;
        Path out = dir.resolve("ties.safetensors");
        try (LoraAdapter ad1 = LoraAdapter.read(a1); LoraAdapter ad2 = LoraAdapter.read(a2)) {
            LoraMerge.mergeWithMethod(basePath, List.of(ad1, ad2), List.of(weights[0], weights[1]), null,
                    new LocalTies(density), "local-ties", 1L, out);
        }
        Mat dq1 = q1.b().times(q1.a()).scale(2.0);
        Mat dq2 = q2.b().times(q2.a()).scale(1.0);
        Mat dv2 = v2.b().times(v2.a()).scale(1.0);
        // v_proj is adapted by the second adapter only: the first contributes a zero task vector.
        Mat wantQ = w.get(Q + ".weight").plus(new Mat(6, 5, tiesReference(List.of(dq1.v(), dq2.v()), weights,
                density)));
        Mat wantV = w.get(V + ".weight").plus(new Mat(4, 5, tiesReference(List.of(new double[20], dv2.v()), weights,
                density)));
        try (SafetensorsReader got = SafetensorsReader.open(out)) {
            float[] gotQ = got.readFloats(Q + ".weight");
            assertClose(wantQ, gotQ, 1e-5, "q");
            assertClose(wantV, got.readFloats(V + ".weight"), 1e-5, "v");
            assertEquals("local-ties", got.metadata().get("kiln.lora.combination"));
            // Trimming to 40% per task vector must leave some entries at the base: TIES really ran.
            int unchanged = 0;
            float[] baseQ = w.get(Q + ".weight").floats();
            for (int i = 0; i < gotQ.length; i++) {
                unchanged += gotQ[i] == baseQ[i] ? 1 : 0;
            }
            assertTrue(unchanged > 0 && unchanged < gotQ.length, "unchanged " + unchanged);
        }
    }

    @Test
    void malformedAdaptersGiveNamedErrorsAndNoOutput() throws Exception {
        Random r = new Random(16);
        Map<String, Mat> w = base(r);
        Path basePath = dir.resolve("base.safetensors");
        LoraFixtures.writeBase(basePath, DType.F32, w);

        Factors q = Factors.random(r, Q, 2, 5, 6);
        Path missingB = LoraFixtures.writeAdapter(dir.resolve("missing-b"), 2, 2.0, false, false, null,
                new Factors(Q, q.a(), null));
        String m = assertThrows(KilnException.class, () -> LoraAdapter.read(missingB)).getMessage();
        assertTrue(m.contains("'" + Q + "'") && m.contains("no lora_B") && m.contains("adapter_model.safetensors"), m);

        Path wrongRank = LoraFixtures.writeAdapter(dir.resolve("wrong-rank"), 4, 2.0, false, false, null, q);
        m = assertThrows(KilnException.class, () -> LoraAdapter.read(wrongRank)).getMessage();
        assertTrue(m.contains("'" + Q + "'") && m.contains("rank 2") && m.contains("r = 4"), m);

        Path abMismatch = LoraFixtures.writeAdapter(dir.resolve("ab"), 2, 2.0, false, false, null,
                new Factors(Q, q.a(), Mat.random(r, 6, 3, 1)));
        m = assertThrows(KilnException.class, () -> LoraAdapter.read(abMismatch)).getMessage();
        assertTrue(m.contains("'" + Q + "'") && m.contains("rank 2") && m.contains("rank 3"), m);

        Path dora = LoraFixtures.writeAdapter(dir.resolve("dora"), 2, 2.0, false, false, Map.of("use_dora", true), q);
        m = assertThrows(KilnException.class, () -> LoraAdapter.read(dora)).getMessage();
        assertTrue(m.contains("use_dora"), m);

        Path noConfig = dir.resolve("empty");
        Files.createDirectories(noConfig);
        m = assertThrows(KilnException.class, () -> LoraAdapter.read(noConfig)).getMessage();
        assertTrue(m.contains("adapter_config.json"), m);

        // Valid adapter, but for a layer the base does not have.
        Path stranger = LoraFixtures.writeAdapter(dir.resolve("stranger"), 2, 2.0, false, false, null,
                q, Factors.random(r, "model.layers.7.self_attn.k_proj", 2, 5, 6));
        Path out = dir.resolve("out/merged.safetensors");
        try (LoraAdapter adapter = LoraAdapter.read(stranger)) {
            m = assertThrows(KilnException.class, () -> LoraMerge.mergeIntoBase(basePath, adapter, 1.0, out))
                    .getMessage();
            assertTrue(m.contains("'model.layers.7.self_attn.k_proj'")
                    && m.contains("'model.layers.7.self_attn.k_proj.weight'") && m.contains("base.safetensors"), m);
            assertThrows(KilnException.class, () -> LoraMerge.mergeWithMethod(basePath, List.of(adapter),
                    List.of(1.0), null, new LocalTies(0.5), "local-ties", 1L, out));
        }
        // Wrong layer shape: the adapter's q_proj is 6 x 5 but this base's is 6 x 4.
        Path otherBase = dir.resolve("other.safetensors");
        LoraFixtures.writeBase(otherBase, DType.F32, Map.of(Q + ".weight", Mat.random(r, 6, 4, 1)));
        Path good = LoraFixtures.writeAdapter(dir.resolve("good"), 2, 2.0, false, false, null, q);
        try (LoraAdapter adapter = LoraAdapter.read(good)) {
            m = assertThrows(KilnException.class, () -> LoraMerge.mergeIntoBase(otherBase, adapter, 1.0, out))
                    .getMessage();
            assertTrue(m.contains("[6, 5]") && m.contains("[6, 4]"), m);
        }
        assertEquals(List.of(), files(out.getParent()));
    }

    @Test
    void rankPatternOverridesRankAndAlphaPerModule() throws Exception {
        Random r = new Random(17);
        Factors q = Factors.random(r, Q, 2, 5, 6);
        Factors v = Factors.random(r, V, 4, 5, 4);
        Path ad = LoraFixtures.writeAdapter(dir.resolve("pattern"), 2, 4.0, false, false,
                Map.of("rank_pattern", Map.of("v_proj", 4), "alpha_pattern", Map.of("v_proj", 2.0)), q, v);
        try (LoraAdapter adapter = LoraAdapter.read(ad)) {
            assertEquals(2.0, adapter.modules().get(Q).scaling(), 0);
            assertEquals(0.5, adapter.modules().get(V).scaling(), 0);
            assertEquals(4, adapter.modules().get(V).rank());
        }
    }
}
