package dev.kiln.spi;

/** The value types a technique parameter can take. Values arrive as strings from a pom or YAML file. */
public enum ParameterType {
    /** A 64-bit float; accepts {@code 0.5}, {@code 1e-3}, {@code inf}. */
    DOUBLE,
    /** A 64-bit integer. */
    INT,
    /** {@code true} or {@code false}. */
    BOOLEAN,
    /** Free text. */
    STRING,
    /** One of a fixed list of words. */
    CHOICE
}
