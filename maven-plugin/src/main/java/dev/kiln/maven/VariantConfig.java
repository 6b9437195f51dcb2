package dev.kiln.maven;

import java.io.File;

/**
 * One benchmark variant:
 * {@code <variant><name>half</name><skip><id>unified</id><params><speedup>2</speedup></params></skip></variant>}
 * or {@code <variant><name>int8</name><checkpoint>target/kiln/int8.safetensors</checkpoint></variant>}.
 */
public class VariantConfig {
    /** Unique name, used in reports and in {@code <gate><variant>}. */
    private String name;

    /** A skip policy (id and parameters, as {@code mvn kiln:list} shows); residual blocks it skips do not run. */
    private TechniqueConfig skip;

    /** Another checkpoint (e.g. a compressed one) to measure instead of the benchmark's {@code <checkpoint>}. */
    private File checkpoint;

    public String getName() {
        return name;
    }

    public void setName(String name) {
        this.name = name;
    }

    public TechniqueConfig getSkip() {
        return skip;
    }

    public void setSkip(TechniqueConfig skip) {
        this.skip = skip;
    }

    public File getCheckpoint() {
        return checkpoint;
    }

    public void setCheckpoint(File checkpoint) {
        this.checkpoint = checkpoint;
    }
}
