package dev.kiln.core.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.core.worker.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BenchmarkReportTest {
    @TempDir
    Path dir;

    private final BenchmarkResult result = Fixtures.result();
    private final List<Gates.Check> checks = Gates.evaluate(List.of(new Gates.Gate(null, 0.88, null, null, null)),
            result);

    @Test
    void writesAllThreeFilesWithTheNumbers() throws Exception {
        List<Path> files = BenchmarkReport.write(dir.resolve("nested/report"), result, checks);
        assertEquals(3, files.size());
        for (Path f : files) {
            assertTrue(Files.size(f) > 100, f.toString());
        }
        JsonNode doc = Json.MAPPER.readTree(files.get(0).toFile());
        assertEquals(500, doc.path("samples").asInt());
        assertEquals(64, doc.path("settings").path("batchSize").asInt());
        assertEquals("full", doc.path("variants").get(0).path("name").asText());
        assertTrue(doc.path("variants").get(0).path("baseline").asBoolean());
        JsonNode half = doc.path("variants").get(1);
        assertEquals(0.85, half.path("accuracy").asDouble(), 0);
        assertEquals(1.6, half.path("speedup").asDouble(), 0);
        assertEquals(2.0, half.path("theoreticalSpeedup").asDouble(), 1e-12);
        assertEquals("unified", half.path("skip").path("id").asText());
        assertEquals(6.0, half.path("latencyMillis").path("p95").asDouble(), 0);
        assertEquals(512L << 20, half.path("rssPeakBytes").asLong());
        assertEquals(2, doc.path("gates").size());
        assertFalse(doc.path("passed").asBoolean());
        assertEquals("gate minAccuracy for variant 'half' missed: measured 0.85 < required 0.88",
                doc.path("gates").get(1).path("message").asText());
        // No temporary file is left behind by the atomic writes.
        try (var listing = Files.list(dir.resolve("nested/report"))) {
            assertEquals(3, listing.count());
        }
    }

    @Test
    void markdownHasOneRowPerVariantAndTheGates() {
        String md = BenchmarkReport.markdown(result, checks);
        List<String> rows = md.lines().filter(l -> l.startsWith("| ")).toList();
        assertEquals(3, rows.size(), md);
        assertTrue(rows.get(1).startsWith("| full (baseline) | - | 0.9000 | 1.00x |"), rows.get(1));
        assertTrue(rows.get(2).startsWith("| half | unified {speedup=2} | 0.8500 | 1.60x | 2.00x | 1600 |"),
                rows.get(2));
        assertEquals(rows.get(0).split("\\|").length, rows.get(2).split("\\|").length);
        assertTrue(md.contains("- PASS gate minAccuracy for variant 'full' met: measured 0.9 >= required 0.88"));
        assertTrue(md.contains("- FAIL gate minAccuracy for variant 'half' missed"));
    }

    @Test
    void htmlChartPlacesPointsBySpeedupAndAccuracy() {
        String html = BenchmarkReport.html(result, checks);
        assertTrue(html.contains("<svg") && html.contains("</svg>"));
        assertFalse(html.contains("<script"), "no script: the page must work offline");
        Matcher m = Pattern.compile("<circle class=\"point\" cx=\"([0-9.]+)\" cy=\"([0-9.]+)\"").matcher(html);
        double[][] points = new double[2][];
        int n = 0;
        while (m.find()) {
            points[n++] = new double[] {Double.parseDouble(m.group(1)), Double.parseDouble(m.group(2))};
        }
        assertEquals(2, n);
        // half is faster (further right) and less accurate (lower on screen, larger y) than full.
        assertTrue(points[1][0] > points[0][0]);
        assertTrue(points[1][1] > points[0][1]);
        assertTrue(html.contains("<title>half: accuracy 0.8500, speedup 1.60x</title>"));
    }
}
