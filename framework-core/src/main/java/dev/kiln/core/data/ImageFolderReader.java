package dev.kiln.core.data;

import dev.kiln.spi.KilnException;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;
import javax.imageio.ImageIO;

/**
 * Reads a folder with one subfolder per class ({@code root/<class>/<image>.png}) into a dataset. Classes are the
 * subfolder names in sorted order; images are PNG, JPEG, BMP or GIF, all of the same size. The data is grey (C = 1)
 * when every image is grey, RGB (C = 3) otherwise, with grey images repeated over the three channels.
 */
public final class ImageFolderReader {
    private ImageFolderReader() {
    }

    /** Whether {@code name} has an image extension this reader accepts. */
    static boolean isImage(Path file) {
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        return name.endsWith(".png") || name.endsWith(".jpg") || name.endsWith(".jpeg") || name.endsWith(".bmp")
                || name.endsWith(".gif");
    }

    /** The class subfolders of {@code root}, sorted by name. */
    static List<Path> classFolders(Path root) {
        try (Stream<Path> entries = Files.list(root)) {
            return entries.filter(Files::isDirectory).filter(p -> !p.getFileName().toString().startsWith("."))
                    .sorted().toList();
        } catch (IOException e) {
            throw new KilnException("cannot list image folder " + root + ": " + e.getMessage(), e);
        }
    }

    /** Reads every image under the class subfolders of {@code root}. */
    public static ImageDataset read(Path root) {
        List<Path> classes = classFolders(root);
        if (classes.isEmpty()) {
            throw new KilnException(root + " has no class subfolders (expected " + root + "/<class>/<image>.png)");
        }
        List<Path> files = new ArrayList<>();
        List<Integer> fileLabels = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int c = 0; c < classes.size(); c++) {
            Path folder = classes.get(c);
            names.add(folder.getFileName().toString());
            try (Stream<Path> entries = Files.list(folder)) {
                for (Path file : entries.filter(Files::isRegularFile).filter(ImageFolderReader::isImage).sorted()
                        .toList()) {
                    files.add(file);
                    fileLabels.add(c);
                }
            } catch (IOException e) {
                throw new KilnException("cannot list class folder " + folder + ": " + e.getMessage(), e);
            }
        }
        if (files.isEmpty()) {
            throw new KilnException(root + " has class subfolders but no images (.png, .jpg, .jpeg, .bmp, .gif)");
        }
        List<BufferedImage> images = new ArrayList<>(files.size());
        boolean rgb = false;
        int height = -1;
        int width = -1;
        for (Path file : files) {
            BufferedImage image;
            try {
                image = ImageIO.read(file.toFile());
            } catch (IOException | RuntimeException e) {
                throw new KilnException("unreadable image " + file + ": " + e.getMessage(), e);
            }
            if (image == null) {
                throw new KilnException("unreadable image " + file + ": not a format javax.imageio can decode");
            }
            if (height < 0) {
                height = image.getHeight();
                width = image.getWidth();
            } else if (image.getHeight() != height || image.getWidth() != width) {
                throw new KilnException("image " + file + " is " + image.getWidth() + "x" + image.getHeight()
                        + " but " + files.get(0) + " is " + width + "x" + height + "; all images must be the same size");
            }
            rgb |= image.getColorModel().getNumColorComponents() > 1;
            images.add(image);
        }
        int channels = rgb ? 3 : 1;
        int plane = height * width;
        float[] values = new float[files.size() * channels * plane];
        int[] labels = new int[files.size()];
        int[] argb = new int[plane];
        int[] grey = new int[plane];
        for (int i = 0; i < images.size(); i++) {
            BufferedImage image = images.get(i);
            int base = i * channels * plane;
            if (image.getColorModel().getNumColorComponents() == 1) {
                // getRGB would gamma-convert linear grey to sRGB; the raw samples are what the file holds.
                float scale = (1 << image.getColorModel().getComponentSize(0)) - 1;
                image.getRaster().getSamples(0, 0, width, height, 0, grey);
                for (int ch = 0; ch < channels; ch++) {
                    for (int p = 0; p < plane; p++) {
                        values[base + ch * plane + p] = grey[p] / scale;
                    }
                }
            } else {
                image.getRGB(0, 0, width, height, argb, 0, width);
                for (int p = 0; p < plane; p++) {
                    values[base + p] = ((argb[p] >> 16) & 0xFF) / 255f;
                    values[base + plane + p] = ((argb[p] >> 8) & 0xFF) / 255f;
                    values[base + 2 * plane + p] = (argb[p] & 0xFF) / 255f;
                }
            }
            labels[i] = fileLabels.get(i);
        }
        return new ImageDataset(values, labels, channels, height, width, names, Checksums.sha256(root, files),
                root.toString());
    }
}
