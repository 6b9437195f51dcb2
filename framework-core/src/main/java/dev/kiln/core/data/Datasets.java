package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Opens a dataset by looking at what is at a path:
 * <ul>
 *   <li>a folder with {@code train-images-idx3-ubyte[.gz]} and {@code train-labels-idx1-ubyte[.gz]} (plus optional
 *   {@code t10k-} test files): IDX, as Fashion-MNIST ships;</li>
 *   <li>a folder of class subfolders holding images: an image folder;</li>
 *   <li>a {@code .csv} file: a table whose {@code label} column holds the classes;</li>
 *   <li>a {@code .txt} file: a UTF-8 text corpus (last 10% for validation).</li>
 * </ul>
 */
public final class Datasets {
    /** The share of a text corpus kept for validation by {@link #open(Path)}. */
    public static final double TEXT_VALIDATION_FRACTION = 0.1;

    private Datasets() {
    }

    /** Opens the dataset at {@code path}, detecting its format. */
    public static DataSource open(Path path) {
        if (!Files.exists(path)) {
            throw new KilnException("dataset " + path + " does not exist");
        }
        if (Files.isRegularFile(path)) {
            String name = path.getFileName().toString().toLowerCase(Locale.ROOT);
            if (name.endsWith(".csv")) {
                return new LabeledData(CsvReader.read(path, CsvReader.DEFAULT_LABEL_COLUMN), null, "csv");
            }
            if (name.endsWith(".txt")) {
                return TextCorpus.read(path, TEXT_VALIDATION_FRACTION);
            }
            throw new KilnException("dataset " + path + " is a file of unknown format; expected a .csv or .txt file,"
                    + " an IDX folder or a folder of class subfolders");
        }
        Path trainImages = idxFile(path, "train-images-idx3-ubyte");
        Path trainLabels = idxFile(path, "train-labels-idx1-ubyte");
        if (trainImages != null || trainLabels != null) {
            if (trainImages == null || trainLabels == null) {
                throw new KilnException("IDX folder " + path + " needs both train-images-idx3-ubyte[.gz] and"
                        + " train-labels-idx1-ubyte[.gz]; only " + (trainImages == null ? trainLabels : trainImages)
                        + " is there");
            }
            return openIdx(path, trainImages, trainLabels);
        }
        List<Path> classes = ImageFolderReader.classFolders(path);
        if (!classes.isEmpty()) {
            return new LabeledData(ImageFolderReader.read(path), null, "image-folder");
        }
        throw new KilnException("dataset folder " + path + " holds neither IDX files (train-images-idx3-ubyte.gz,"
                + " ...) nor class subfolders of images");
    }

    private static LabeledData openIdx(Path folder, Path trainImages, Path trainLabels) {
        Path testImages = idxFile(folder, "t10k-images-idx3-ubyte");
        Path testLabels = idxFile(folder, "t10k-labels-idx1-ubyte");
        if ((testImages == null) != (testLabels == null)) {
            throw new KilnException("IDX folder " + folder + " has " + (testImages == null ? testLabels : testImages)
                    + " without its " + (testImages == null ? "images" : "labels") + " file");
        }
        ImageDataset train = IdxReader.read(trainImages, trainLabels, 0);
        ImageDataset test = null;
        List<Path> files = new ArrayList<>(List.of(trainImages, trainLabels));
        if (testImages != null) {
            // Test labels must stay within the classes the training labels define.
            test = IdxReader.read(testImages, testLabels, train.numClasses());
            files.add(testImages);
            files.add(testLabels);
        }
        String sha = Checksums.sha256(folder, files);
        return new LabeledData(withChecksum(train, sha), test == null ? null : withChecksum(test, sha), "idx");
    }

    private static ImageDataset withChecksum(ImageDataset data, String sha) {
        return new ImageDataset(data.values(), data.labels(), data.channels(), data.height(), data.width(),
                data.classNames(), sha, data.source());
    }

    /** {@code name.gz} or {@code name} in {@code folder}, or null. */
    private static Path idxFile(Path folder, String name) {
        for (String candidate : new String[] {name + ".gz", name}) {
            Path file = folder.resolve(candidate);
            if (Files.isRegularFile(file)) {
                return file;
            }
        }
        return null;
    }
}
