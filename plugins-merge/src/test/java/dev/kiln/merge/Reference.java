package dev.kiln.merge;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Float64 reference implementations written from the formulas (merge.md, the papers and their reference code),
 * element by element on plain arrays, independent of the NDArray code under test.
 */
final class Reference {
    private Reference() {
    }

    static double[] delta(double[] model, double[] base) {
        double[] d = new double[base.length];
        for (int j = 0; j < d.length; j++) {
            d[j] = model[j] - base[j];
        }
        return d;
    }

    /** Indices ordered by magnitude, largest first; equal magnitudes by index, smallest first. */
    static Integer[] byMagnitude(double[] v) {
        Integer[] order = new Integer[v.length];
        for (int j = 0; j < v.length; j++) {
            order[j] = j;
        }
        Arrays.sort(order, Comparator.<Integer>comparingDouble(j -> -Math.abs(v[j])).thenComparingInt(j -> j));
        return order;
    }

    /** Keeps the entries at positions [from, to) of the magnitude order, zeroes the rest. */
    static double[] keepRanks(double[] v, long from, long to) {
        Integer[] order = byMagnitude(v);
        double[] out = new double[v.length];
        for (int r = (int) from; r < to; r++) {
            out[order[r]] = v[order[r]];
        }
        return out;
    }

    static double[] linear(double[][] models, double[] w, boolean normalize) {
        int d = models[0].length;
        double[] out = new double[d];
        double total = 0;
        for (int i = 0; i < models.length; i++) {
            total += w[i];
            for (int j = 0; j < d; j++) {
                out[j] += w[i] * models[i][j];
            }
        }
        if (normalize) {
            for (int j = 0; j < d; j++) {
                out[j] /= total;
            }
        }
        return out;
    }

    /**
     * The generalized task-arithmetic combination on already sparsified task vectors: optional sign consensus
     * over the weighted vectors, sum, optional division by the (agreeing) weights, scale, add to base.
     */
    static double[] combine(double[] base, double[][] sparse, double[] w, boolean consensus, boolean countSigns,
            boolean normalize, double lambda) {
        int d = base.length;
        double[] out = new double[d];
        for (int j = 0; j < d; j++) {
            double elected = 0;
            for (int i = 0; i < sparse.length; i++) {
                double c = w[i] * sparse[i][j];
                elected += countSigns ? Math.signum(c) : c;
            }
            double sign = elected >= 0 ? 1 : -1;
            double sum = 0;
            double weights = 0;
            for (int i = 0; i < sparse.length; i++) {
                double c = w[i] * sparse[i][j];
                boolean in = !consensus || Math.signum(c) == sign;
                if (in) {
                    sum += c;
                    weights += w[i];
                }
            }
            if (normalize) {
                sum /= weights == 0 ? 1 : weights;
            }
            out[j] = base[j] + lambda * sum;
        }
        return out;
    }

    static double[] ties(double[] base, double[][] models, double[] w, double[] density, boolean countSigns,
            boolean normalize, double lambda) {
        double[][] trimmed = new double[models.length][];
        for (int i = 0; i < models.length; i++) {
            double[] tau = delta(models[i], base);
            long k = Math.round(density[i] * tau.length);
            trimmed[i] = keepRanks(tau, 0, k);
        }
        return combine(base, trimmed, w, true, countSigns, normalize, lambda);
    }

    static double[] breadcrumbs(double[] base, double[][] models, double[] w, double[] density, double[] gamma,
            boolean consensus, boolean normalize, double lambda) {
        double[][] kept = new double[models.length][];
        for (int i = 0; i < models.length; i++) {
            double[] tau = delta(models[i], base);
            int n = tau.length;
            long keep = Math.round(density[i] * n);
            long top = Math.round(gamma[i] * n);
            if (keep + top > n) {
                top = n - keep;
            }
            kept[i] = keepRanks(tau, top, top + keep);
        }
        return combine(base, kept, w, consensus, false, normalize, lambda);
    }

    /** DARE with given keep masks: inverse (1/density), l1 (norm matching) or none. */
    static double[] dare(double[] base, double[][] models, double[] w, boolean[][] keep, double[] density,
            String rescale, boolean consensus, boolean normalize, double lambda) {
        double[][] kept = new double[models.length][];
        for (int i = 0; i < models.length; i++) {
            double[] tau = delta(models[i], base);
            double[] out = new double[tau.length];
            double before = 0;
            double after = 0;
            for (int j = 0; j < tau.length; j++) {
                out[j] = keep[i][j] ? tau[j] : 0;
                before += Math.abs(tau[j]);
                after += Math.abs(out[j]);
            }
            double factor = rescale.equals("inverse") ? 1 / density[i]
                    : rescale.equals("l1") && after > 0 ? before / after : 1;
            for (int j = 0; j < tau.length; j++) {
                out[j] *= factor;
            }
            kept[i] = out;
        }
        return combine(base, kept, w, consensus, false, normalize, lambda);
    }

    static double[] slerp(double[] a, double[] b, double t) {
        double na = 0;
        double nb = 0;
        double dot = 0;
        for (int j = 0; j < a.length; j++) {
            na += a[j] * a[j];
            nb += b[j] * b[j];
        }
        na = Math.sqrt(na);
        nb = Math.sqrt(nb);
        for (int j = 0; j < a.length; j++) {
            dot += (na > 1e-8 ? a[j] / na : a[j]) * (nb > 1e-8 ? b[j] / nb : b[j]);
        }
        double ca;
        double cb;
        if (Math.abs(dot) > 0.9995) {
            ca = 1 - t;
            cb = t;
        } else {
            double omega = Math.acos(dot);
            ca = Math.sin((1 - t) * omega) / Math.sin(omega);
            cb = Math.sin(t * omega) / Math.sin(omega);
        }
        double[] out = new double[a.length];
        for (int j = 0; j < a.length; j++) {
            out[j] = ca * a[j] + cb * b[j];
        }
        return out;
    }

    /** Model Stock; {@code rowLength} = numel for one ratio per tensor, else the last axis length. */
    static double[] modelStock(double[] base, double[][] models, int rowLength) {
        int n = models.length;
        int d = base.length;
        double[] out = new double[d];
        for (int r = 0; r < d / rowLength; r++) {
            int from = r * rowLength;
            double cosSum = 0;
            int pairs = 0;
            for (int i = 0; i < n; i++) {
                for (int k = i + 1; k < n; k++) {
                    double dot = 0;
                    double ni = 0;
                    double nk = 0;
                    for (int j = from; j < from + rowLength; j++) {
                        double a = models[i][j] - base[j];
                        double b = models[k][j] - base[j];
                        dot += a * b;
                        ni += a * a;
                        nk += b * b;
                    }
                    double cos = dot / Math.max(Math.sqrt(ni) * Math.sqrt(nk), 1e-6);
                    cosSum += Math.max(-1, Math.min(1, cos));
                    pairs++;
                }
            }
            double cos = cosSum / pairs;
            double t = n * cos / (1 + (n - 1) * cos);
            for (int j = from; j < from + rowLength; j++) {
                double mean = 0;
                for (double[] model : models) {
                    mean += model[j] / n;
                }
                out[j] = t * mean + (1 - t) * base[j];
            }
        }
        return out;
    }

    static double[] fisher(double[][] models, double[][] fisher, double[] w, double epsilon) {
        int d = models[0].length;
        double[] out = new double[d];
        for (int j = 0; j < d; j++) {
            double num = 0;
            double den = 0;
            for (int i = 0; i < models.length; i++) {
                double f = w[i] * Math.max(fisher[i][j], epsilon);
                num += f * models[i][j];
                den += f;
            }
            out[j] = num / den;
        }
        return out;
    }

    /** Order-statistic clamp of one row, with the reference code's indices. */
    static double[] clampRow(double[] row, double lo, double hi) {
        int d = row.length;
        double[] sorted = row.clone();
        Arrays.sort(sorted);
        int low = (int) (d * lo);
        int high = (int) (d * (1 - hi) - 1);
        low = Math.max(0, Math.min(d - 1, low));
        high = Math.max(0, Math.min(d - 1, high));
        double[] out = new double[d];
        for (int j = 0; j < d; j++) {
            out[j] = Math.min(Math.max(row[j], sorted[low]), sorted[high]);
        }
        return out;
    }

    static double[] minMax(double[] row) {
        double min = Double.POSITIVE_INFINITY;
        double max = Double.NEGATIVE_INFINITY;
        for (double v : row) {
            min = Math.min(min, v);
            max = Math.max(max, v);
        }
        double[] out = new double[row.length];
        for (int j = 0; j < row.length; j++) {
            out[j] = max == min ? 0 : (row[j] - min) / (max - min);
        }
        return out;
    }

    static double[] pcb(double[] base, double[][] models, double[] w, double ratio, double clip, double temperature,
            double lambda) {
        int n = models.length;
        int d = base.length;
        double[][] tau = new double[n][];
        double[] column = new double[d];
        for (int i = 0; i < n; i++) {
            tau[i] = delta(models[i], base);
            for (int j = 0; j < d; j++) {
                column[j] += tau[i][j];
            }
        }
        double temp = temperature > 0 ? temperature : n;
        List<double[]> clipped = new ArrayList<>();
        List<double[]> scales = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            double[] abs = new double[d];
            for (int j = 0; j < d; j++) {
                abs[j] = Math.abs(tau[i][j]);
            }
            double[] absClipped = clampRow(abs, clip, clip);
            double[] intraBase = minMax(absClipped);
            double[] score = new double[d];
            double[] signedClipped = new double[d];
            for (int j = 0; j < d; j++) {
                double intra = Math.exp(temp * intraBase[j] * intraBase[j]);
                double inter = Math.tanh(tau[i][j] * column[j]);
                score[j] = intra * inter;
                signedClipped[j] = Math.signum(tau[i][j]) * absClipped[j];
            }
            scales.add(minMax(clampRow(score, 1 - ratio, 0)));
            clipped.add(signedClipped);
        }
        double[] out = new double[d];
        for (int j = 0; j < d; j++) {
            double num = 0;
            double den = 0;
            for (int i = 0; i < n; i++) {
                num += w[i] * scales.get(i)[j] * clipped.get(i)[j];
                den += scales.get(i)[j];
            }
            out[j] = base[j] + lambda * num / Math.max(den, 1e-12);
        }
        return out;
    }
}
