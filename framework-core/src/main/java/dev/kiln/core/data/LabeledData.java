package dev.kiln.core.data;

/**
 * Labelled samples: a training set and, when the source ships one (IDX {@code t10k-} files), a test set.
 *
 * @param train the training samples
 * @param test the held-out test samples, or null when the source has none (split one off the training set)
 * @param format how the data was stored: {@code idx}, {@code image-folder} or {@code csv}
 */
public record LabeledData(ImageDataset train, ImageDataset test, String format) implements DataSource {

    /** The training set's checksum, which for IDX folders covers the test files too. */
    @Override
    public String sha256() {
        return train.sha256();
    }
}
