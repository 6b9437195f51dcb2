package dev.kiln.testkit;

import java.util.List;
import org.junit.jupiter.api.Assertions;

/**
 * What a contract run found: one line per violation, each naming the technique and saying what is wrong, plus the
 * checks that were skipped on request (so a report never hides that something was not looked at).
 */
public final class ContractReport {
    private final String subject;
    private final List<String> violations;
    private final List<String> skipped;

    ContractReport(String subject, List<String> violations, List<String> skipped) {
        this.subject = subject;
        this.violations = List.copyOf(violations);
        this.skipped = List.copyOf(skipped);
    }

    /** The technique or provider that was checked, as written in the messages. */
    public String subject() {
        return subject;
    }

    /** One line per violation, in the order found; empty when the contract holds. */
    public List<String> violations() {
        return violations;
    }

    /** The checks that were skipped on request. */
    public List<String> skippedChecks() {
        return skipped;
    }

    public boolean passed() {
        return violations.isEmpty();
    }

    /** Throws JUnit's assertion error listing every violation, one per line, when there is any. */
    public ContractReport assertPassed() {
        if (!passed()) {
            Assertions.fail(toString());
        }
        return this;
    }

    @Override
    public String toString() {
        if (passed()) {
            return subject + ": contract holds" + (skipped.isEmpty() ? "" : " (skipped: " + skipped + ")");
        }
        StringBuilder text = new StringBuilder();
        text.append(violations.size()).append(" contract violation").append(violations.size() == 1 ? "" : "s")
                .append(" for ").append(subject).append(':');
        for (String violation : violations) {
            text.append(System.lineSeparator()).append(violation);
        }
        return text.toString();
    }
}
