package dev.kiln.testkit;

import dev.kiln.spi.KilnSpi;
import dev.kiln.spi.Kind;
import dev.kiln.spi.Parameters;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import dev.kiln.spi.TechniqueProvider;
import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.compress.Compressor;
import dev.kiln.spi.merge.MergeMethod;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.SkipPolicy;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The contract every Kiln technique must keep, as a check a technique author runs from a unit test:
 *
 * <pre>{@code
 * @Test
 * void keepsTheContract() {
 *     TechniqueContract.check(new Cutout());                     // throws listing every violation
 *     TechniqueContract.forTechnique(new MyMerge())
 *             .withParameters(Map.of("density", "1"))
 *             .skip(TechniqueContract.IDENTICAL_MODELS)          // say why in a comment
 *             .check();
 *     TechniqueContract.checkProvider(new AcmeTechniques());
 * }
 * }</pre>
 *
 * <p>The kit runs the technique on small random inputs on the default engine's device (the author's test class path
 * supplies the engine, e.g. the PyTorch engine and its CPU natives), judges the results on host copies, and reports
 * one line per violation, such as {@code augmentation 'x': targets row 3 sums to 0.5, expected 1 (on batch ...)}.
 * Checks are named by the constants of this class so that one that legitimately does not hold can be skipped.
 */
public final class TechniqueContract {
    /** All kinds: the id matches {@link Registry#ID_SYNTAX}. */
    public static final String ID = "id";
    /** All kinds: parameter names unique and documented. */
    public static final String PARAMETERS = "parameters";
    /** All kinds: values just outside a bound, bogus choices and flags are rejected, naming the parameter. */
    public static final String INVALID_PARAMETERS = "invalid-parameters";
    /** Output shapes equal the input shapes. */
    public static final String SHAPE = "shape";
    /** Output dtypes: inputs keep theirs, targets, merged tensors and reconstructions are float32. */
    public static final String DTYPE = "dtype";
    /** Augment: outputs on the batch's device. */
    public static final String DEVICE = "device";
    /** Augment: targets are (N, K), rows sum to 1 within 1e-5, no negative entry. */
    public static final String TARGETS = "targets";
    /** No NaN or infinity in any output. */
    public static final String FINITE = "finite";
    /** Input arrays are left as they were. */
    public static final String INPUTS_UNCHANGED = "inputs-unchanged";
    /** The same seed twice gives identical outputs. */
    public static final String DETERMINISM = "determinism";
    /** Augment and compress: all-zero inputs give finite outputs. */
    public static final String ZERO_INPUTS = "zero-inputs";
    /** Augment: an {@code alpha} (or {@code *-alpha}) of 1e-3 and 1e3, lambda at its extremes, gives no NaN. */
    public static final String EXTREME_ALPHA = "extreme-alpha";
    /** Augment: a returned extra loss term gives a finite scalar. */
    public static final String EXTRA_LOSS = "extra-loss";
    /** Merge: merging N identical models gives that model within 1e-5. */
    public static final String IDENTICAL_MODELS = "identical-models";
    /** Merge with a base: models equal to the base (zero task vectors) merge to the base, finite. */
    public static final String ZERO_TASK_VECTORS = "zero-task-vectors";
    /** Merge: a method that requires a base throws a KilnException without one. */
    public static final String MISSING_BASE = "missing-base";
    /** Compress: appliesTo is true for a plain weight matrix. */
    public static final String APPLIES_TO = "applies-to";
    /** Compress: storedBytes() is positive. */
    public static final String STORED_BYTES = "stored-bytes";
    /** Skip: a FIXED_LAYER_SET policy runs the same layers at every decode position. */
    public static final String FIXED_LAYER_SET = "fixed-layer-set";

    private static final Set<String> CHECKS = Set.of(ID, PARAMETERS, INVALID_PARAMETERS, SHAPE, DTYPE, DEVICE, TARGETS,
            FINITE, INPUTS_UNCHANGED, DETERMINISM, ZERO_INPUTS, EXTREME_ALPHA, EXTRA_LOSS, IDENTICAL_MODELS,
            ZERO_TASK_VECTORS, MISSING_BASE, APPLIES_TO, STORED_BYTES, FIXED_LAYER_SET);

    private final Technique<?> technique;
    private final Map<String, String> parameters = new LinkedHashMap<>();
    private final Set<String> skipped = new LinkedHashSet<>();
    private int[] modelCounts = {1, 3};
    private ModelLayout layout = new ModelLayout(8, 0);
    private long seed = 42;

    private TechniqueContract(Technique<?> technique) {
        if (technique == null) {
            throw new IllegalArgumentException("technique is null");
        }
        this.technique = technique;
    }

    /** Starts a configurable check of {@code technique}. */
    public static TechniqueContract forTechnique(Technique<?> technique) {
        return new TechniqueContract(technique);
    }

    /** Checks {@code technique} with its default parameters; throws an assertion error listing every violation. */
    public static ContractReport check(Technique<?> technique) {
        return forTechnique(technique).check();
    }

    /** Raw parameter values (as in a pom) used instead of the defaults for every run. */
    public TechniqueContract withParameters(Map<String, String> values) {
        parameters.putAll(values);
        return this;
    }

    /** Skips the named checks (the constants of this class); an unknown name fails at once, so typos cannot hide. */
    public TechniqueContract skip(String... checks) {
        for (String check : checks) {
            if (!CHECKS.contains(check)) {
                throw new IllegalArgumentException("unknown check '" + check + "'; known: " + new java.util.TreeSet<>(
                        CHECKS));
            }
            skipped.add(check);
        }
        return this;
    }

    /** Merge: the numbers of models to merge (default 1 and 3), for methods defined only for some counts. */
    public TechniqueContract withModelCounts(int... counts) {
        if (counts.length == 0) {
            throw new IllegalArgumentException("at least one model count");
        }
        for (int count : counts) {
            if (count < 1) {
                throw new IllegalArgumentException("model count " + count + " must be at least 1");
            }
        }
        modelCounts = counts.clone();
        return this;
    }

    /** Skip: the layout the sessions decide over (default 8 dense layers). */
    public TechniqueContract withLayout(ModelLayout newLayout) {
        layout = newLayout;
        return this;
    }

    /** The seed of the random inputs and of the technique's random sources (default 42). */
    public TechniqueContract withSeed(long newSeed) {
        seed = newSeed;
        return this;
    }

    /** Runs every check that is not skipped and returns the findings without throwing. */
    public ContractReport run() {
        Kind kind = technique.kind();
        String subject = (kind == null ? "technique" : kind.noun()) + " '" + technique.id() + "'";
        Findings findings = new Findings(subject, skipped);
        if (kind == null) {
            findings.fail("kind() returned null");
            return report(subject, findings);
        }
        ParameterChecks.descriptor(technique, findings);
        Parameters bound = ParameterChecks.bind(technique, parameters, findings);
        if (bound == null) {
            return report(subject, findings);
        }
        ParameterChecks.invalidValues(technique, parameters, findings);
        Object operation = ParameterChecks.create(technique, bound, findings);
        if (operation == null) {
            return report(subject, findings);
        }
        switch (kind) {
            case AUGMENT:
                new AugmentChecks(findings, seed).run(technique, (Augmentation) operation, parameters);
                break;
            case MERGE:
                new MergeChecks(findings, seed, modelCounts).run((MergeMethod) operation);
                break;
            case COMPRESS:
                new CompressChecks(findings, seed).run((Compressor) operation);
                break;
            case SKIP:
                new SkipChecks(findings, seed, layout).run((SkipPolicy) operation);
                break;
            default:
                throw new IllegalStateException("no checks for kind " + kind);
        }
        return report(subject, findings);
    }

    /** Runs the checks and throws JUnit's assertion error, one line per violation, when any fails. */
    public ContractReport check() {
        return run().assertPassed();
    }

    private ContractReport report(String subject, Findings findings) {
        return new ContractReport(subject, findings.violations, new ArrayList<>(skipped));
    }

    /**
     * Provider-level contract: the SPI version it was built for is compatible, the technique list is non-empty and
     * without nulls, every id is valid and unique within its kind, and the registry accepts it. Returns the report;
     * throws an assertion error listing every violation.
     */
    public static ContractReport checkProvider(TechniqueProvider provider) {
        String subject = "technique provider " + provider.getClass().getName();
        Findings findings = new Findings(subject, Set.of());
        String version = null;
        try {
            version = provider.spiVersion();
        } catch (RuntimeException e) {
            findings.fail("spiVersion() threw " + Findings.describe(e));
        }
        if (!KilnSpi.isCompatible(version)) {
            findings.fail("spiVersion() is '" + version + "', not compatible with Kiln SPI " + KilnSpi.VERSION
                    + "; return KilnSpi.VERSION");
        }
        List<Technique<?>> techniques = null;
        try {
            techniques = provider.techniques();
        } catch (RuntimeException e) {
            findings.fail("techniques() threw " + Findings.describe(e));
        }
        if (techniques == null || techniques.isEmpty()) {
            findings.fail("techniques() returned " + (techniques == null ? "null" : "no technique"));
        } else {
            Map<String, Integer> seen = new HashMap<>();
            for (Technique<?> t : techniques) {
                if (t == null) {
                    findings.fail("techniques() contains null");
                    continue;
                }
                if (t.id() == null || !Registry.ID_SYNTAX.matcher(t.id()).matches()) {
                    findings.fail("technique id '" + t.id() + "' does not match " + Registry.ID_SYNTAX.pattern());
                }
                String key = (t.kind() == null ? "?" : t.kind().noun()) + " '" + t.id() + "'";
                if (seen.merge(key, 1, Integer::sum) == 2) {
                    findings.fail("declares " + key + " more than once");
                }
            }
            if (findings.violations.isEmpty()) {
                try {
                    Registry.of(List.of(provider));
                } catch (RuntimeException e) {
                    findings.fail("the registry refuses it: " + Findings.describe(e));
                }
            }
        }
        return new ContractReport(subject, findings.violations, List.of()).assertPassed();
    }
}
