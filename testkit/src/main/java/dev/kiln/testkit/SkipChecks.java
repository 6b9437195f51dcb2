package dev.kiln.testkit;

import dev.kiln.spi.skip.KvCacheRule;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.Phase;
import dev.kiln.spi.skip.SkipPolicy;
import dev.kiln.spi.skip.SkipSession;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Starts sessions for every phase and checks the {@link SkipPolicy} contract. */
final class SkipChecks {
    private static final int DECODE_POSITIONS = 20;

    private final Findings findings;
    private final long seed;
    private final ModelLayout layout;

    SkipChecks(Findings findings, long seed, ModelLayout layout) {
        this.findings = findings;
        this.seed = seed;
        this.layout = layout;
    }

    void run(SkipPolicy policy) {
        KvCacheRule rule;
        try {
            rule = policy.kvCacheRule();
        } catch (RuntimeException e) {
            findings.fail("kvCacheRule() threw " + Findings.describe(e));
            return;
        }
        if (rule == null) {
            findings.fail("kvCacheRule() returned null");
        }
        for (Phase phase : Phase.values()) {
            List<String> first = decisions(policy, phase, 0);
            if (first == null || !findings.on(TechniqueContract.DETERMINISM)) {
                continue;
            }
            List<String> again = decisions(policy, phase, 0);
            if (again != null && !again.equals(first)) {
                findings.fail("not deterministic: phase " + phase + " with the same seed ran " + first + " then "
                        + again + "; draw randomness from the random source given to begin()");
            }
        }
        if (rule == KvCacheRule.FIXED_LAYER_SET && findings.on(TechniqueContract.FIXED_LAYER_SET)) {
            List<String> reference = decisions(policy, Phase.DECODE, 0);
            for (int position = 1; reference != null && position <= DECODE_POSITIONS; position++) {
                List<String> at = decisions(policy, Phase.DECODE, position);
                if (at != null && !at.equals(reference)) {
                    findings.fail("kvCacheRule is FIXED_LAYER_SET but DECODE at position " + position + " ran "
                            + at + " instead of " + reference + " (position 0)");
                    break;
                }
            }
        }
    }

    /** The layers that ran with their sub-blocks ("3:af" = layer 3, attention and FFN), or null after a violation. */
    private List<String> decisions(SkipPolicy policy, Phase phase, int position) {
        String where = " (" + layout + ", " + phase + ", position " + position + ")";
        SkipSession session;
        try {
            session = policy.begin(layout, phase, position, new SplittableRandom(seed));
        } catch (RuntimeException e) {
            findings.fail("begin threw " + Findings.describe(e) + where);
            return null;
        }
        if (session == null) {
            findings.fail("begin returned null" + where);
            return null;
        }
        List<String> ran = new ArrayList<>();
        for (int layer = 0; layer < layout.layers(); layer++) {
            try {
                if (session.runLayer(layer)) {
                    ran.add(layer + ":" + (session.runAttention(layer) ? "a" : "") + (session.runFfn(layer) ? "f" : ""));
                }
            } catch (RuntimeException e) {
                findings.fail("the session threw " + Findings.describe(e) + " for layer " + layer + where);
                return null;
            }
        }
        return ran;
    }
}
