package dev.kiln.core.data;

/** What {@link Datasets#open} found: labelled samples or a text corpus. */
public sealed interface DataSource permits LabeledData, TextCorpus {
    /** Hex SHA-256 of the source files, recorded by every output made from the data. */
    String sha256();
}
