package dev.kiln.core.lm;

import java.util.Map;

/** An independent float64 forward of {@link DecoderLm} on plain arrays, for one prompt, without any cache. */
final class Reference {
    private Reference() {
    }

    static double[] lastLogits(DecoderLm model, int[] tokens, boolean[] keep) {
        DecoderConfig c = model.config();
        Map<String, ai.djl.ndarray.NDArray> w = model.weights();
        int t = tokens.length;
        int d = c.dim();
        double[] emb = get(w, "embed.weight");
        double[] pos = get(w, "pos.weight");
        double[][] h = new double[t][d];
        for (int i = 0; i < t; i++) {
            for (int k = 0; k < d; k++) {
                h[i][k] = emb[tokens[i] * d + k] + pos[i * d + k];
            }
        }
        for (int l = 0; l < c.layers(); l++) {
            if (!keep[l]) {
                continue;
            }
            String p = "layers." + l + ".";
            double[][] a = new double[t][];
            for (int i = 0; i < t; i++) {
                a[i] = linear(w, p + "attn.qkv", layerNorm(w, p + "ln1", h[i]));
            }
            int heads = c.heads();
            int dh = d / heads;
            double[][] mixed = new double[t][d];
            for (int hd = 0; hd < heads; hd++) {
                for (int i = 0; i < t; i++) {
                    double[] s = new double[i + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int k = 0; k < dh; k++) {
                            dot += a[i][hd * dh + k] * a[j][d + hd * dh + k];
                        }
                        s[j] = dot / Math.sqrt(dh);
                        max = Math.max(max, s[j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= i; j++) {
                        s[j] = Math.exp(s[j] - max);
                        z += s[j];
                    }
                    for (int j = 0; j <= i; j++) {
                        for (int k = 0; k < dh; k++) {
                            mixed[i][hd * dh + k] += s[j] / z * a[j][2 * d + hd * dh + k];
                        }
                    }
                }
            }
            for (int i = 0; i < t; i++) {
                double[] o = linear(w, p + "attn.out", mixed[i]);
                for (int k = 0; k < d; k++) {
                    h[i][k] += o[k];
                }
                double[] u = linear(w, p + "ffn.up", layerNorm(w, p + "ln2", h[i]));
                for (int k = 0; k < u.length; k++) {
                    double x = u[k];
                    u[k] = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
                }
                double[] f = linear(w, p + "ffn.down", u);
                for (int k = 0; k < d; k++) {
                    h[i][k] += f[k];
                }
            }
        }
        double[] last = layerNorm(w, "norm", h[t - 1]);
        double[] head = get(w, c.tiedHead() ? "embed.weight" : "head.weight");
        double[] logits = new double[DecoderLm.VOCAB];
        for (int v = 0; v < logits.length; v++) {
            for (int k = 0; k < d; k++) {
                logits[v] += head[v * d + k] * last[k];
            }
        }
        return logits;
    }

    private static double[] get(Map<String, ai.djl.ndarray.NDArray> w, String name) {
        return DecoderLmTest.toDouble(w.get(name).toFloatArray());
    }

    private static double[] linear(Map<String, ai.djl.ndarray.NDArray> w, String name, double[] x) {
        double[] weight = get(w, name + ".weight");
        double[] bias = get(w, name + ".bias");
        double[] y = new double[bias.length];
        for (int o = 0; o < y.length; o++) {
            double s = bias[o];
            for (int i = 0; i < x.length; i++) {
                s += weight[o * x.length + i] * x[i];
            }
            y[o] = s;
        }
        return y;
    }

    private static double[] layerNorm(Map<String, ai.djl.ndarray.NDArray> w, String name, double[] x) {
        double mean = 0;
        for (double v : x) {
            mean += v;
        }
        mean /= x.length;
        double var = 0;
        for (double v : x) {
            var += (v - mean) * (v - mean);
        }
        var /= x.length;
        double[] g = get(w, name + ".weight");
        double[] b = get(w, name + ".bias");
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = (x[i] - mean) / Math.sqrt(var + 1e-5) * g[i] + b[i];
        }
        return y;
    }
}
