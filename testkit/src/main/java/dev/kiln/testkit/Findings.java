package dev.kiln.testkit;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/** Collects violations for one subject and knows which checks the author switched off. */
final class Findings {
    final String where;
    private final Set<String> skipped;
    final List<String> violations = new ArrayList<>();

    Findings(String where, Set<String> skipped) {
        this.where = where;
        this.skipped = skipped;
    }

    boolean on(String check) {
        return !skipped.contains(check);
    }

    void fail(String message) {
        String line = where + ": " + message;
        // The same defect usually shows in every case; one line per distinct message keeps the report readable.
        if (!violations.contains(line)) {
            violations.add(line);
        }
    }

    /** Records {@code message} when it is not null and {@code check} is on. */
    void failIf(String check, String message) {
        if (message != null && on(check)) {
            fail(message);
        }
    }

    static String describe(Throwable e) {
        return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
    }
}
