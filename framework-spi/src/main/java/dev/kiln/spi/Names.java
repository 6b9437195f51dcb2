package dev.kiln.spi;

import java.util.Collection;
import java.util.Locale;

/** Finds the closest known name to a misspelt one, for "did you mean" suggestions. */
final class Names {
    private Names() {
    }

    /**
     * The known name with the smallest edit distance to {@code wanted} (case-insensitive, adjacent swaps count as
     * one edit), or null when none is close: at most 2 edits, or 3 for names of 8 letters or more. A known name that
     * starts with the wanted one (or the reverse) also counts as close.
     */
    static String closest(String wanted, Collection<String> known) {
        String target = wanted.toLowerCase(Locale.ROOT);
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        for (String candidate : known) {
            String lower = candidate.toLowerCase(Locale.ROOT);
            int distance = distance(target, lower);
            if (distance < bestDistance) {
                best = candidate;
                bestDistance = distance;
            }
        }
        if (best == null) {
            return null;
        }
        int limit = target.length() >= 8 ? 3 : 2;
        String lowerBest = best.toLowerCase(Locale.ROOT);
        boolean prefix = target.length() >= 3 && (lowerBest.startsWith(target) || target.startsWith(lowerBest));
        return bestDistance <= limit || prefix ? best : null;
    }

    /** Optimal string alignment distance (Levenshtein plus transpositions). */
    static int distance(String a, String b) {
        int[][] d = new int[a.length() + 1][b.length() + 1];
        for (int i = 0; i <= a.length(); i++) {
            d[i][0] = i;
        }
        for (int j = 0; j <= b.length(); j++) {
            d[0][j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                d[i][j] = Math.min(Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2) && a.charAt(i - 2) == b.charAt(j - 1)) {
                    d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
                }
            }
        }
        return d[a.length()][b.length()];
    }
}
