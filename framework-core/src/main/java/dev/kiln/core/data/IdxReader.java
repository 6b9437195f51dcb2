package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;

/**
 * Reads IDX files (the MNIST / Fashion-MNIST format), raw or gzip'd: a big-endian magic number {@code 0x00000803}
 * for images (N, H, W) or {@code 0x00000801} for labels (N), big-endian dimensions, then unsigned bytes.
 */
public final class IdxReader {
    /** Magic number of a uint8 3-D file (images). */
    public static final int IMAGES_MAGIC = 0x00000803;
    /** Magic number of a uint8 1-D file (labels). */
    public static final int LABELS_MAGIC = 0x00000801;

    private IdxReader() {
    }

    /**
     * Reads an image file and its label file into one dataset with values in [0, 1].
     *
     * @param numClasses the class count labels must stay below, or 0 to use the largest label + 1
     */
    public static ImageDataset read(Path images, Path labels, int numClasses) {
        Idx imageFile = readFile(images, IMAGES_MAGIC);
        Idx labelFile = readFile(labels, LABELS_MAGIC);
        int n = imageFile.dims[0];
        if (labelFile.dims[0] != n) {
            throw new KilnException(images + " holds " + n + " images but " + labels + " holds "
                    + labelFile.dims[0] + " labels; they must match");
        }
        int[] y = new int[n];
        int max = -1;
        for (int i = 0; i < n; i++) {
            y[i] = labelFile.data[i] & 0xFF;
            max = Math.max(max, y[i]);
        }
        int classes = numClasses > 0 ? numClasses : max + 1;
        for (int i = 0; i < n; i++) {
            if (y[i] >= classes) {
                throw new KilnException(labels + ": label " + y[i] + " of item " + i + " is out of range [0, "
                        + classes + ")");
            }
        }
        float[] x = new float[imageFile.data.length];
        for (int i = 0; i < x.length; i++) {
            x[i] = (imageFile.data[i] & 0xFF) / 255f;
        }
        List<String> names = new ArrayList<>();
        for (int c = 0; c < classes; c++) {
            names.add(Integer.toString(c));
        }
        String sha = Checksums.sha256(images.getParent() == null ? Path.of(".") : images.toAbsolutePath()
                .getParent(), List.of(images.toAbsolutePath(), labels.toAbsolutePath()));
        return new ImageDataset(x, y, 1, imageFile.dims[1], imageFile.dims[2], names, sha, images.toString());
    }

    /** A parsed IDX file: its dimensions and its bytes. */
    record Idx(int[] dims, byte[] data) {
    }

    /** Reads one IDX file, checking the magic number and that the data is complete. */
    static Idx readFile(Path file, int expectedMagic) {
        try (InputStream raw = open(file); DataInputStream in = new DataInputStream(raw)) {
            int magic;
            try {
                magic = in.readInt();
            } catch (EOFException e) {
                throw new KilnException(file + " is truncated: it ends before the 4-byte magic number");
            }
            if (magic != expectedMagic) {
                throw new KilnException(file + " has magic number " + String.format("0x%08X", magic)
                        + " but an IDX " + (expectedMagic == IMAGES_MAGIC ? "image" : "label")
                        + " file starts with " + String.format("0x%08X", expectedMagic));
            }
            int rank = expectedMagic & 0xFF;
            int[] dims = new int[rank];
            long total = 1;
            for (int d = 0; d < rank; d++) {
                try {
                    dims[d] = in.readInt();
                } catch (EOFException e) {
                    throw new KilnException(file + " is truncated: it ends inside the header (dimension " + d + ")");
                }
                if (dims[d] < 0) {
                    throw new KilnException(file + ": dimension " + d + " is negative (" + dims[d] + ")");
                }
                total *= dims[d];
            }
            if (total > Integer.MAX_VALUE - 16) {
                throw new KilnException(file + ": " + total + " bytes of data is more than one array can hold");
            }
            byte[] data = new byte[(int) total];
            int read = in.readNBytes(data, 0, data.length);
            if (read < data.length) {
                throw new KilnException(file + " is truncated: the header promises " + total + " bytes of data but"
                        + " only " + read + " follow");
            }
            return new Idx(dims, data);
        } catch (EOFException e) {
            throw new KilnException(file + " is truncated (the gzip stream ends early)", e);
        } catch (IOException e) {
            throw new KilnException("cannot read IDX file " + file + ": " + e.getMessage(), e);
        }
    }

    /** Opens raw or gzip'd files alike, telling them apart by the gzip magic bytes rather than the name. */
    private static InputStream open(Path file) throws IOException {
        BufferedInputStream in = new BufferedInputStream(Files.newInputStream(file), 1 << 16);
        in.mark(2);
        int b0 = in.read();
        int b1 = in.read();
        in.reset();
        if (b0 == 0x1f && b1 == 0x8b) {
            return new GZIPInputStream(in, 1 << 16);
        }
        return in;
    }
}
