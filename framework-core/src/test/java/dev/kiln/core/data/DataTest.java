package dev.kiln.core.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import dev.kiln.spi.KilnException;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.zip.GZIPOutputStream;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataTest {
    @TempDir
    Path dir;

    /** Writes an IDX file by hand, independently of the reader. */
    static void writeIdx(Path file, int magic, int[] dims, byte[] data, boolean gzip) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        DataOutputStream out = new DataOutputStream(bytes);
        out.writeInt(magic);
        for (int d : dims) {
            out.writeInt(d);
        }
        out.write(data);
        out.flush();
        try (OutputStream file1 = Files.newOutputStream(file);
                OutputStream sink = gzip ? new GZIPOutputStream(file1) : file1) {
            sink.write(bytes.toByteArray());
        }
    }

    private static byte[] randomBytes(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void readsIdxRawAndGzipWithTheSameValues() throws IOException {
        byte[] pixels = randomBytes(5 * 4 * 3, 1);
        byte[] labels = {0, 3, 1, 2, 3};
        for (boolean gzip : new boolean[] {false, true}) {
            String suffix = gzip ? ".gz" : "";
            Path images = dir.resolve("img" + suffix);
            Path lab = dir.resolve("lab" + suffix);
            writeIdx(images, 0x803, new int[] {5, 4, 3}, pixels, gzip);
            writeIdx(lab, 0x801, new int[] {5}, labels, gzip);
            ImageDataset data = IdxReader.read(images, lab, 0);
            assertEquals(5, data.size());
            assertEquals(1, data.channels());
            assertEquals(4, data.height());
            assertEquals(3, data.width());
            assertEquals(4, data.numClasses());
            assertArrayEquals(new int[] {0, 3, 1, 2, 3}, data.labels());
            float[] v = data.values();
            for (int i = 0; i < pixels.length; i++) {
                assertEquals((pixels[i] & 0xFF) / 255.0, v[i], 1e-7);
            }
            assertEquals(64, data.sha256().length());
        }
    }

    @Test
    void idxWrongMagicNamesTheFile() throws IOException {
        Path images = dir.resolve("images");
        Path labels = dir.resolve("labels");
        writeIdx(images, 0x801, new int[] {2}, new byte[2], false);
        writeIdx(labels, 0x801, new int[] {2}, new byte[2], false);
        KilnException e = assertThrows(KilnException.class, () -> IdxReader.read(images, labels, 0));
        assertTrue(e.getMessage().contains(images.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("0x00000801"), e.getMessage());
    }

    @Test
    void idxCountMismatch() throws IOException {
        Path images = dir.resolve("images.gz");
        Path labels = dir.resolve("labels.gz");
        writeIdx(images, 0x803, new int[] {3, 2, 2}, new byte[12], true);
        writeIdx(labels, 0x801, new int[] {4}, new byte[4], true);
        KilnException e = assertThrows(KilnException.class, () -> IdxReader.read(images, labels, 0));
        assertTrue(e.getMessage().contains("3 images") && e.getMessage().contains("4 labels"), e.getMessage());
    }

    @Test
    void idxTruncatedDataAndHeader() throws IOException {
        Path images = dir.resolve("images");
        Path labels = dir.resolve("labels");
        writeIdx(images, 0x803, new int[] {3, 2, 2}, new byte[11], false);
        writeIdx(labels, 0x801, new int[] {3}, new byte[3], false);
        KilnException e = assertThrows(KilnException.class, () -> IdxReader.read(images, labels, 0));
        assertTrue(e.getMessage().contains(images.toString()) && e.getMessage().contains("truncated"),
                e.getMessage());

        Files.write(images, new byte[] {0, 0, 8, 3, 0, 0});
        e = assertThrows(KilnException.class, () -> IdxReader.read(images, labels, 0));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("header"), e.getMessage());

        // A gzip stream cut in the middle is truncated too.
        Path gz = dir.resolve("cut.gz");
        writeIdx(gz, 0x803, new int[] {3, 2, 2}, randomBytes(12, 3), true);
        byte[] whole = Files.readAllBytes(gz);
        Files.write(gz, Arrays.copyOf(whole, whole.length - 12));
        e = assertThrows(KilnException.class, () -> IdxReader.read(gz, labels, 0));
        assertTrue(e.getMessage().contains(gz.toString()) && e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void idxLabelOutOfRange() throws IOException {
        Path images = dir.resolve("images");
        Path labels = dir.resolve("labels");
        writeIdx(images, 0x803, new int[] {2, 1, 1}, new byte[2], false);
        writeIdx(labels, 0x801, new int[] {2}, new byte[] {1, 12}, false);
        KilnException e = assertThrows(KilnException.class, () -> IdxReader.read(images, labels, 10));
        assertTrue(e.getMessage().contains(labels.toString()) && e.getMessage().contains("label 12"),
                e.getMessage());
    }

    @Test
    void opensTheEmbeddedFashionMnist() {
        Path folder = Path.of("..", "data", "fashion-mnist-mini");
        LabeledData data = (LabeledData) Datasets.open(folder);
        assertEquals("idx", data.format());
        assertEquals(5000, data.train().size());
        assertEquals(1000, data.test().size());
        assertEquals(10, data.train().numClasses());
        int[] train = data.train().classCounts();
        int[] test = data.test().classCounts();
        for (int c = 0; c < 10; c++) {
            assertEquals(500, train[c]);
            assertEquals(100, test[c]);
        }
        assertEquals(data.train().sha256(), data.test().sha256());
        assertEquals(28, data.train().height());
    }

    @Test
    void detectsFormatsAndRejectsUnknown() throws IOException {
        Path txt = dir.resolve("corpus.txt");
        Files.writeString(txt, "héllo world, 0123456789", StandardCharsets.UTF_8);
        TextCorpus corpus = (TextCorpus) Datasets.open(txt);
        byte[] all = "héllo world, 0123456789".getBytes(StandardCharsets.UTF_8);
        assertEquals(all.length, corpus.train().length + corpus.validation().length);
        assertEquals(Math.round(all.length * 0.1), corpus.validation().length);
        assertArrayEquals(Arrays.copyOfRange(all, corpus.train().length, all.length), corpus.validation());

        Path bin = dir.resolve("bad.txt");
        Files.write(bin, new byte[] {(byte) 0xC3, 0x28});
        KilnException e = assertThrows(KilnException.class, () -> Datasets.open(bin));
        assertTrue(e.getMessage().contains(bin.toString()), e.getMessage());

        Path other = dir.resolve("data.parquet");
        Files.write(other, new byte[1]);
        assertThrows(KilnException.class, () -> Datasets.open(other));
        Path empty = Files.createDirectory(dir.resolve("empty"));
        assertThrows(KilnException.class, () -> Datasets.open(empty));
    }

    @Test
    void imageFolderGreyAndRgb() throws IOException {
        Path root = dir.resolve("images");
        Random random = new Random(5);
        int[][] expectedGrey = new int[4][];
        String[] classes = {"cat", "dog"};
        for (int i = 0; i < 4; i++) {
            Path folder = Files.createDirectories(root.resolve(classes[i / 2]));
            BufferedImage image = new BufferedImage(3, 2, BufferedImage.TYPE_BYTE_GRAY);
            expectedGrey[i] = new int[6];
            for (int p = 0; p < 6; p++) {
                int v = random.nextInt(256);
                expectedGrey[i][p] = v;
                image.getRaster().setSample(p % 3, p / 3, 0, v);
            }
            ImageIO.write(image, "png", folder.resolve("im" + i + ".png").toFile());
        }
        LabeledData data = (LabeledData) Datasets.open(root);
        ImageDataset d = data.train();
        assertEquals("image-folder", data.format());
        assertEquals(List.of("cat", "dog"), d.classNames());
        assertEquals(1, d.channels());
        assertArrayEquals(new int[] {0, 0, 1, 1}, d.labels());
        float[] v = d.values();
        for (int i = 0; i < 4; i++) {
            for (int p = 0; p < 6; p++) {
                assertEquals(expectedGrey[i][p] / 255.0, v[i * 6 + p], 1e-6);
            }
        }

        // One RGB image makes the whole set RGB, channels in R, G, B planes.
        BufferedImage rgb = new BufferedImage(3, 2, BufferedImage.TYPE_INT_RGB);
        rgb.setRGB(1, 0, (10 << 16) | (20 << 8) | 30);
        ImageIO.write(rgb, "png", root.resolve("dog").resolve("z.png").toFile());
        ImageDataset colour = ImageFolderReader.read(root);
        assertEquals(3, colour.channels());
        float[] c = colour.values();
        int base = 4 * 18;
        assertEquals(10 / 255.0, c[base + 1], 1e-6);
        assertEquals(20 / 255.0, c[base + 6 + 1], 1e-6);
        assertEquals(30 / 255.0, c[base + 12 + 1], 1e-6);
        // A grey image is repeated over the three planes.
        assertEquals(expectedGrey[0][2] / 255.0, c[2], 1e-6);
        assertEquals(expectedGrey[0][2] / 255.0, c[12 + 2], 1e-6);

        Path broken = root.resolve("cat").resolve("broken.png");
        Files.write(broken, new byte[] {1, 2, 3});
        KilnException e = assertThrows(KilnException.class, () -> ImageFolderReader.read(root));
        assertTrue(e.getMessage().contains(broken.toString()), e.getMessage());
    }

    @Test
    void csvLoadsFeaturesAndLabels() throws IOException {
        Path csv = dir.resolve("table.csv");
        Files.writeString(csv, "a,species,b\n1.5,setosa,2\n-3,virginica,4e-1\n\n0,setosa,7\n");
        ImageDataset d = CsvReader.read(csv, "species");
        // Datasets.open reads the "label" column, which this file lacks.
        KilnException missing = assertThrows(KilnException.class, () -> Datasets.open(csv));
        assertTrue(missing.getMessage().contains("'label'"), missing.getMessage());
        Path withLabel = csvWith("f1,label\n0.5,1\n");
        assertNull(((LabeledData) Datasets.open(withLabel)).test());
        assertEquals(2, ((LabeledData) Datasets.open(withLabel)).train().numClasses());
        assertEquals(3, d.size());
        assertEquals(2, d.channels());
        assertArrayEquals(new float[] {1.5f, 2f, -3f, 0.4f, 0f, 7f}, d.values());
        assertEquals(List.of("setosa", "virginica"), d.classNames());
        assertArrayEquals(new int[] {0, 1, 0}, d.labels());
    }

    @Test
    void csvErrorsNameTheLine() throws IOException {
        Path csv = dir.resolve("t.csv");
        Files.writeString(csv, "x,label\n1,0\n2,1,5\n");
        KilnException e = assertThrows(KilnException.class, () -> CsvReader.read(csv, "label"));
        assertTrue(e.getMessage().contains(csv + " line 3") && e.getMessage().contains("3 columns"),
                e.getMessage());
        Files.writeString(csv, "x,label\n1,0\nabc,1\n");
        e = assertThrows(KilnException.class, () -> CsvReader.read(csv, "label"));
        assertTrue(e.getMessage().contains("line 3") && e.getMessage().contains("'abc'"), e.getMessage());
        Files.writeString(csv, "x,label\n1,0\n2,-1\n");
        e = assertThrows(KilnException.class, () -> CsvReader.read(csv, "label"));
        assertTrue(e.getMessage().contains("line 3") && e.getMessage().contains("-1"), e.getMessage());
        e = assertThrows(KilnException.class, () -> CsvReader.read(csv, "target"));
        assertTrue(e.getMessage().contains("'target'"), e.getMessage());
        ImageDataset ok = CsvReader.read(csvWith("x,label\n1,2\n3,0\n"), "label");
        assertEquals(3, ok.numClasses());
    }

    private Path csvWith(String text) throws IOException {
        Path file = Files.createTempFile(dir, "t", ".csv");
        Files.writeString(file, text);
        return file;
    }

    private static ImageDataset random(int n, int c, int h, int w, int classes, long seed) {
        Random random = new Random(seed);
        float[] values = new float[n * c * h * w];
        for (int i = 0; i < values.length; i++) {
            // Channel-dependent offsets and scales so a wrong axis shows up.
            int channel = (i / (h * w)) % c;
            values[i] = (float) (channel * 3 + (channel + 1) * random.nextGaussian());
        }
        int[] labels = new int[n];
        for (int i = 0; i < n; i++) {
            labels[i] = random.nextInt(classes);
        }
        List<String> names = new ArrayList<>();
        for (int k = 0; k < classes; k++) {
            names.add("c" + k);
        }
        return new ImageDataset(values, labels, c, h, w, names, "0".repeat(64), "random");
    }

    @Test
    void seededShuffleIsReproducibleAndAPermutation() {
        ImageDataset d = random(50, 2, 3, 3, 4, 7);
        int[] a = ImageDataset.permutation(50, 42);
        assertArrayEquals(a, ImageDataset.permutation(50, 42));
        assertFalse(Arrays.equals(a, ImageDataset.permutation(50, 43)));
        Set<Integer> seen = new HashSet<>();
        for (int i : a) {
            seen.add(i);
        }
        assertEquals(50, seen.size());
        ImageDataset s1 = d.shuffled(42);
        assertArrayEquals(s1.values(), d.shuffled(42).values());
        float[] v = d.values();
        float[] sv = s1.values();
        int[] labels = d.labels();
        for (int i = 0; i < 50; i++) {
            assertEquals(labels[a[i]], s1.labels()[i]);
            assertArrayEquals(Arrays.copyOfRange(v, a[i] * 18, a[i] * 18 + 18),
                    Arrays.copyOfRange(sv, i * 18, i * 18 + 18));
        }
        ImageDataset.Split split = d.split(0.2, 9);
        assertEquals(40, split.train().size());
        assertEquals(10, split.validation().size());
        assertArrayEquals(split.train().values(), d.split(0.2, 9).train().values());
        assertThrows(KilnException.class, () -> d.split(1.5, 1));
    }

    @Test
    void normalisationMatchesFloat64Reference() {
        ImageDataset d = random(40, 3, 4, 5, 3, 11);
        Normalization n = d.computeNormalization();
        float[] v = d.values();
        int plane = 20;
        double[] mean = new double[3];
        double[] var = new double[3];
        for (int c = 0; c < 3; c++) {
            double sum = 0;
            int count = 0;
            for (int i = 0; i < 40; i++) {
                for (int p = 0; p < plane; p++) {
                    sum += v[(i * 3 + c) * plane + p];
                    count++;
                }
            }
            mean[c] = sum / count;
            double sq = 0;
            for (int i = 0; i < 40; i++) {
                for (int p = 0; p < plane; p++) {
                    double dlt = v[(i * 3 + c) * plane + p] - mean[c];
                    sq += dlt * dlt;
                }
            }
            var[c] = sq / count;
            assertEquals(mean[c], n.mean()[c], 1e-5);
            assertEquals(Math.sqrt(var[c]), n.std()[c], 1e-5);
        }
        assertNotEquals(n.mean()[0], n.mean()[2]);
        ImageDataset z = d.normalized(n);
        assertEquals(n, z.normalization());
        float[] zv = z.values();
        for (int i = 0; i < zv.length; i++) {
            int c = (i / plane) % 3;
            assertEquals((v[i] - mean[c]) / Math.sqrt(var[c]), zv[i], 1e-4);
        }
        assertThrows(KilnException.class, () -> z.normalized(n));
    }

    @Test
    void batchesKeepTheLastPartialBatch() {
        ImageDataset d = random(10, 1, 2, 2, 3, 13);
        int[] order = ImageDataset.permutation(10, 1);
        try (NDManager manager = NDManager.newBaseManager()) {
            Iterator<NDList> it = d.batches(manager, 4, order);
            List<Long> sizes = new ArrayList<>();
            float[] v = d.values();
            int seen = 0;
            while (it.hasNext()) {
                NDList batch = it.next();
                long b = batch.get(0).getShape().get(0);
                sizes.add(b);
                assertEquals(4, batch.get(0).getShape().dimension());
                float[] x = batch.get(0).toFloatArray();
                long[] y = batch.get(1).toLongArray();
                for (int i = 0; i < b; i++) {
                    int index = order[seen + i];
                    assertEquals(d.labels()[index], y[i]);
                    assertArrayEquals(Arrays.copyOfRange(v, index * 4, index * 4 + 4),
                            Arrays.copyOfRange(x, i * 4, i * 4 + 4));
                }
                seen += b;
            }
            assertEquals(List.of(4L, 4L, 2L), sizes);
            assertEquals(3, d.batchCount(4));
        }
    }
}
