package dev.kiln.core.bench;

import dev.kiln.core.io.AtomicFiles;
import dev.kiln.core.worker.Json;
import dev.kiln.core.worker.KilnVersion;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Writes a benchmark's results as {@code report.json} (for machines), {@code report.md} (a table for pull requests)
 * and {@code report.html} (the table plus a chart of accuracy against measured speedup, drawn as inline SVG so the
 * page needs no script and no network). Each file is replaced atomically.
 */
public final class BenchmarkReport {
    /** File names inside the report folder. */
    public static final String JSON = "report.json";
    public static final String MARKDOWN = "report.md";
    public static final String HTML = "report.html";

    private BenchmarkReport() {
    }

    /** Writes all three files into {@code dir} (created if needed) and returns their paths. */
    public static List<Path> write(Path dir, BenchmarkResult result, List<Gates.Check> checks) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new KilnException("cannot create report folder " + dir + ": " + e.getMessage(), e);
        }
        Path json = dir.resolve(JSON);
        Path md = dir.resolve(MARKDOWN);
        Path html = dir.resolve(HTML);
        AtomicFiles.writeString(json, json(result, checks));
        AtomicFiles.writeString(md, markdown(result, checks));
        AtomicFiles.writeString(html, html(result, checks));
        return List.of(json, md, html);
    }

    /** The JSON document: settings, environment, one object per variant, and every gate check. */
    public static String json(BenchmarkResult result, List<Gates.Check> checks) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("kilnVersion", KilnVersion.get());
        doc.put("created", Instant.now().toString());
        doc.put("checkpoint", result.checkpoint());
        doc.put("model", Map.of("id", result.model(), "params", result.modelParameters()));
        doc.put("dataset", result.dataset());
        doc.put("samples", result.samples());
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("batchSize", result.settings().batchSize());
        settings.put("warmup", result.settings().warmup());
        settings.put("repeats", result.settings().repeats());
        settings.put("latencySamples", result.settings().latencySamples());
        settings.put("seed", result.settings().seed());
        doc.put("settings", settings);
        Map<String, Object> env = new LinkedHashMap<>();
        env.put("device", result.device());
        env.put("engine", result.engine());
        env.put("dtype", "float32");
        env.put("cores", result.cores());
        env.put("java", System.getProperty("java.version"));
        env.put("os", System.getProperty("os.name") + " " + System.getProperty("os.arch"));
        env.put("rssPeakPerVariant", result.rssPerVariant());
        doc.put("environment", env);
        List<Map<String, Object>> variants = new ArrayList<>();
        for (BenchmarkResult.VariantResult v : result.variants()) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("name", v.name());
            row.put("baseline", v.baseline());
            row.put("checkpoint", v.checkpoint());
            if (v.skipId() != null) {
                row.put("skip", Map.of("id", v.skipId(), "params", v.skipParams()));
            }
            if (!Double.isNaN(v.accuracy())) {
                row.put("accuracy", v.accuracy());
            }
            if (!Double.isNaN(v.perplexity())) {
                row.put("perplexity", v.perplexity());
            }
            if (!v.extra().isEmpty()) {
                row.put("measurements", v.extra());
            }
            row.put("speedup", v.speedup());
            row.put("theoreticalSpeedup", v.theoreticalSpeedup());
            row.put("blocks", v.blocks());
            row.put("blocksRun", v.blocksRun());
            row.put("samplesPerSecond", v.samplesPerSecond());
            row.put("medianPassSeconds", v.medianPassSeconds());
            row.put("passSeconds", v.passSeconds());
            row.put("latencyMillis", Map.of("batchSize", result.settings().batchSize(), "p50", v.latencyP50Millis(),
                    "p95", v.latencyP95Millis()));
            row.put("latency1Millis", Map.of("batchSize", 1, "p50", v.latency1P50Millis(), "p95",
                    v.latency1P95Millis()));
            row.put("heapPeakBytes", v.heapPeakBytes());
            row.put("rssPeakBytes", v.rssPeakBytes());
            variants.add(row);
        }
        doc.put("variants", variants);
        List<Map<String, Object>> gates = new ArrayList<>();
        for (Gates.Check c : checks) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("gate", c.gate());
            row.put("variant", c.variant());
            row.put("bar", c.bar());
            row.put("measured", c.measured());
            row.put("passed", c.passed());
            row.put("message", c.message());
            gates.add(row);
        }
        doc.put("gates", gates);
        doc.put("passed", Gates.misses(checks).isEmpty());
        try {
            return Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(doc) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A Markdown page: one table row per variant, then the gate checks. */
    public static String markdown(BenchmarkResult result, List<Gates.Check> checks) {
        StringBuilder md = new StringBuilder();
        md.append("# Kiln benchmark\n\n");
        md.append(String.format(Locale.ROOT, "Checkpoint `%s` (model `%s`), %d test samples from `%s`.%n%n",
                result.checkpoint(), result.model(), result.samples(), result.dataset()));
        md.append(String.format(Locale.ROOT, "Batch size %d, %d warm-up batches, %d timed passes (medians), "
                + "device %s, %s, %d cores, float32.%n%n", result.settings().batchSize(), result.settings().warmup(),
                result.settings().repeats(), result.device(), result.engine(), result.cores()));
        md.append(header(result));
        md.append("\n|");
        for (int i = 0; i < header(result).split("\\|").length - 1; i++) {
            md.append(i == 0 ? "---|" : "---:|");
        }
        md.append('\n');
        for (BenchmarkResult.VariantResult v : result.variants()) {
            md.append("| ").append(String.join(" | ", cells(v))).append(" |\n");
        }
        md.append("\nSpeedup is the baseline's median pass time over the variant's, measured in this run; "
                + "theoretical is blocks / blocks run. Peak RSS is ")
                .append(result.rssPerVariant() ? "per variant" : "the process's peak so far").append(".\n");
        if (!checks.isEmpty()) {
            md.append("\n## Gates\n\n");
            for (Gates.Check c : checks) {
                md.append("- ").append(c.passed() ? "PASS " : "FAIL ").append(c.message()).append('\n');
            }
        }
        return md.toString();
    }

    private static String header(BenchmarkResult result) {
        return "| variant | skip | " + (result.languageModel() ? "perplexity" : "accuracy") + " | speedup | theoretical | samples/s | p50 ms | p95 ms | p50 ms (bs 1) "
                + "| p95 ms (bs 1) | heap MiB | RSS MiB |";
    }

    private static List<String> cells(BenchmarkResult.VariantResult v) {
        List<String> cells = new ArrayList<>();
        cells.add(v.name() + (v.baseline() ? " (baseline)" : ""));
        cells.add(v.skipId() == null ? "-" : v.skipId() + (v.skipParams().isEmpty() ? "" : " " + v.skipParams()));
        cells.add(String.format(Locale.ROOT, "%.4f", v.quality()));
        cells.add(String.format(Locale.ROOT, "%.2fx", v.speedup()));
        cells.add(String.format(Locale.ROOT, "%.2fx", v.theoreticalSpeedup()));
        cells.add(String.format(Locale.ROOT, "%.0f", v.samplesPerSecond()));
        cells.add(String.format(Locale.ROOT, "%.2f", v.latencyP50Millis()));
        cells.add(String.format(Locale.ROOT, "%.2f", v.latencyP95Millis()));
        cells.add(String.format(Locale.ROOT, "%.2f", v.latency1P50Millis()));
        cells.add(String.format(Locale.ROOT, "%.2f", v.latency1P95Millis()));
        cells.add(String.format(Locale.ROOT, "%.1f", v.heapPeakBytes() / 1048576.0));
        cells.add(v.rssPeakBytes() < 0 ? "n/a" : String.format(Locale.ROOT, "%.1f", v.rssPeakBytes() / 1048576.0));
        return cells;
    }

    /** A self-contained HTML page: the chart, the table and the gates. */
    public static String html(BenchmarkResult result, List<Gates.Check> checks) {
        StringBuilder h = new StringBuilder();
        h.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Kiln benchmark</title>\n")
                .append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}")
                .append("td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,")
                .append("th:first-child{text-align:left}.pass{color:#080}.fail{color:#b00}</style></head><body>\n");
        h.append("<h1>Kiln benchmark</h1>\n<p>Checkpoint <code>").append(escape(result.checkpoint()))
                .append("</code> (model <code>").append(escape(result.model())).append("</code>), ")
                .append(result.samples()).append(" test samples, batch size ").append(result.settings().batchSize())
                .append(", ").append(result.settings().repeats()).append(" timed passes, device ")
                .append(escape(result.device())).append(".</p>\n");
        h.append(result.languageModel() ? "<h2>Perplexity against measured speedup</h2>\n"
                : "<h2>Accuracy against measured speedup</h2>\n").append(chart(result)).append('\n');
        h.append("<h2>Variants</h2>\n<table><tr>");
        for (String col : header(result).split("\\|")) {
            if (!col.isBlank()) {
                h.append("<th>").append(escape(col.trim())).append("</th>");
            }
        }
        h.append("</tr>\n");
        for (BenchmarkResult.VariantResult v : result.variants()) {
            h.append("<tr>");
            for (String cell : cells(v)) {
                h.append("<td>").append(escape(cell)).append("</td>");
            }
            h.append("</tr>\n");
        }
        h.append("</table>\n");
        if (!checks.isEmpty()) {
            h.append("<h2>Gates</h2>\n<ul>\n");
            for (Gates.Check c : checks) {
                h.append("<li class=\"").append(c.passed() ? "pass" : "fail").append("\">")
                        .append(c.passed() ? "PASS " : "FAIL ").append(escape(c.message())).append("</li>\n");
            }
            h.append("</ul>\n");
        }
        return h.append("</body></html>\n").toString();
    }

    /** An SVG scatter plot, speedup on x and accuracy on y, one labelled point per variant. */
    static String chart(BenchmarkResult result) {
        int width = 640;
        int height = 400;
        int left = 70;
        int right = 30;
        int top = 20;
        int bottom = 50;
        double xMin = Double.MAX_VALUE;
        double xMax = -Double.MAX_VALUE;
        double yMin = Double.MAX_VALUE;
        double yMax = -Double.MAX_VALUE;
        for (BenchmarkResult.VariantResult v : result.variants()) {
            xMin = Math.min(xMin, v.speedup());
            xMax = Math.max(xMax, v.speedup());
            yMin = Math.min(yMin, v.quality());
            yMax = Math.max(yMax, v.quality());
        }
        // Pad the ranges so single points and equal values still get a visible axis.
        double xPad = Math.max((xMax - xMin) * 0.1, 0.05);
        double yPad = Math.max((yMax - yMin) * 0.1, 0.01);
        xMin = Math.max(0, xMin - xPad);
        xMax += xPad;
        yMin = Math.max(0, yMin - yPad);
        yMax = result.languageModel() ? yMax + yPad : Math.min(1, yMax + yPad);
        if (yMax <= yMin) {
            yMax = yMin + 0.01;
        }
        double plotW = width - left - right;
        double plotH = height - top - bottom;
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                + "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"accuracy against speedup\">%n", width, height,
                width, height));
        s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                + "stroke=\"#444\"/>%n", left, top, plotW, plotH));
        for (int i = 0; i <= 4; i++) {
            double xv = xMin + (xMax - xMin) * i / 4;
            double yv = yMin + (yMax - yMin) * i / 4;
            double px = left + plotW * i / 4;
            double py = top + plotH - plotH * i / 4;
            s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                    + "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.2fx</text>%n", px, top,
                    px, top + plotH, px, height - bottom + 16, xv));
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                    + "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3f</text>%n", left, py,
                    left + plotW, py, left - 6, py + 4, yv));
        }
        s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">"
                + "measured speedup (baseline = 1)</text>%n", left + plotW / 2, height - 10));
        s.append(String.format(Locale.ROOT, "<text x=\"14\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                + "transform=\"rotate(-90 14 %.1f)\">%s</text>%n", top + plotH / 2, top + plotH / 2,
                result.languageModel() ? "validation perplexity" : "test accuracy"));
        for (BenchmarkResult.VariantResult v : result.variants()) {
            double px = left + plotW * (v.speedup() - xMin) / (xMax - xMin);
            double py = top + plotH - plotH * (v.quality() - yMin) / (yMax - yMin);
            s.append(String.format(Locale.ROOT, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\">"
                    + "<title>%s: %s %.4f, speedup %.2fx</title></circle>"
                    + "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>%n", px, py,
                    v.baseline() ? "#555" : "#1f77b4", escape(v.name()),
                    result.languageModel() ? "perplexity" : "accuracy", v.quality(), v.speedup(), px + 8, py - 6,
                    escape(v.name())));
        }
        return s.append("</svg>").toString();
    }

    static String escape(String text) {
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
