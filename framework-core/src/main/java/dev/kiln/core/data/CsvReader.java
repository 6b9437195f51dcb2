package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Reads a CSV table with a header row: one label column, chosen by name, and numeric feature columns. The result has
 * shape (N, F, 1, 1). Integer labels are class indices as they are; any other labels are class names, numbered in
 * sorted order. Quoting is not supported: numeric tables do not need it.
 */
public final class CsvReader {
    /** The label column used when none is named. */
    public static final String DEFAULT_LABEL_COLUMN = "label";

    private CsvReader() {
    }

    /** Reads {@code file}, taking labels from the column named {@code labelColumn}. */
    public static ImageDataset read(Path file, String labelColumn) {
        List<String> lines;
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            lines = in.lines().toList();
        } catch (IOException | java.io.UncheckedIOException e) {
            throw new KilnException("cannot read CSV file " + file + ": " + e.getMessage(), e);
        }
        if (lines.isEmpty() || lines.get(0).isBlank()) {
            throw new KilnException(file + " is empty; a CSV table needs a header row");
        }
        String[] header = split(lines.get(0));
        int labelIndex = Arrays.asList(header).indexOf(labelColumn);
        if (labelIndex < 0) {
            throw new KilnException(file + " has no column '" + labelColumn + "'; its columns are: "
                    + String.join(", ", header));
        }
        int features = header.length - 1;
        List<float[]> rows = new ArrayList<>();
        List<String> rawLabels = new ArrayList<>();
        for (int line = 1; line < lines.size(); line++) {
            String text = lines.get(line);
            if (text.isBlank()) {
                continue;
            }
            String[] cells = split(text);
            int lineNumber = line + 1;
            if (cells.length != header.length) {
                throw new KilnException(file + " line " + lineNumber + " has " + cells.length + " columns but the"
                        + " header has " + header.length);
            }
            float[] row = new float[features];
            int f = 0;
            for (int c = 0; c < cells.length; c++) {
                if (c == labelIndex) {
                    continue;
                }
                try {
                    row[f++] = Float.parseFloat(cells[c]);
                } catch (NumberFormatException e) {
                    throw new KilnException(file + " line " + lineNumber + ", column '" + header[c] + "': '"
                            + cells[c] + "' is not a number");
                }
            }
            rows.add(row);
            rawLabels.add(cells[labelIndex]);
        }
        if (rows.isEmpty()) {
            throw new KilnException(file + " has a header but no data rows");
        }
        int[] labels = new int[rows.size()];
        List<String> classNames = new ArrayList<>();
        if (rawLabels.stream().allMatch(s -> s.matches("-?\\d+"))) {
            int max = 0;
            for (int i = 0; i < labels.length; i++) {
                long value = Long.parseLong(rawLabels.get(i));
                if (value < 0 || value > 1_000_000) {
                    throw new KilnException(file + " line " + lineNumber(lines, i) + ": label " + value
                            + " is out of range (integer labels are class indices from 0)");
                }
                labels[i] = (int) value;
                max = Math.max(max, labels[i]);
            }
            for (int c = 0; c <= max; c++) {
                classNames.add(Integer.toString(c));
            }
        } else {
            Map<String, Integer> index = new LinkedHashMap<>();
            for (String name : new TreeSet<>(rawLabels)) {
                index.put(name, index.size());
                classNames.add(name);
            }
            for (int i = 0; i < labels.length; i++) {
                labels[i] = index.get(rawLabels.get(i));
            }
        }
        float[] values = new float[rows.size() * features];
        for (int i = 0; i < rows.size(); i++) {
            System.arraycopy(rows.get(i), 0, values, i * features, features);
        }
        return new ImageDataset(values, labels, features, 1, 1, classNames, Checksums.sha256(file), file.toString());
    }

    /** The 1-based file line of data row {@code row}, skipping blank lines as the reader does. */
    private static int lineNumber(List<String> lines, int row) {
        int seen = -1;
        for (int line = 1; line < lines.size(); line++) {
            if (!lines.get(line).isBlank() && ++seen == row) {
                return line + 1;
            }
        }
        return -1;
    }

    private static String[] split(String line) {
        String[] cells = line.split(",", -1);
        for (int i = 0; i < cells.length; i++) {
            cells[i] = cells[i].trim();
        }
        return cells;
    }
}
