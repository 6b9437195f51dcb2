package dev.kiln.maven;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.Kind;
import dev.kiln.spi.ParameterSpec;
import dev.kiln.spi.Registry;
import dev.kiln.spi.Technique;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * Keeps docs/techniques.md and docs/goals.md in step with the code: both are generated from the registry and from the
 * plugin descriptor, and this test fails when the committed files differ (a technique without an entry, a parameter
 * or default that changed). Regenerate with {@code ./mvnw -pl maven-plugin -am test -Dtest=ReferenceDocsTest
 * -Dkiln.docs.update=true -Dsurefire.failIfNoSpecifiedTests=false}.
 */
class ReferenceDocsTest {
    private static final Path DOCS = Path.of(System.getProperty("user.dir")).resolve("../docs").normalize();
    private static final boolean UPDATE = Boolean.getBoolean("kiln.docs.update");

    @Test
    void techniqueReferenceMatchesTheRegistry() throws IOException {
        Registry registry = Registry.discover(getClass().getClassLoader());
        StringBuilder md = new StringBuilder();
        md.append("# Technique reference\n\n")
                .append("Generated from the code by `ReferenceDocsTest` (maven-plugin); a test fails when this page and\n")
                .append("the techniques disagree. `mvn kiln:list -Dkiln.describe=<kind>:<id>` prints the same.\n")
                .append("Every parameter is set in a pom as `<params><name>value</name></params>` (or in YAML as\n")
                .append("`name: value`).\n");
        for (Kind kind : Kind.values()) {
            List<Technique<?>> techniques = registry.all(kind);
            md.append("\n## ").append(kind.id()).append(" (").append(kind.noun()).append("s)\n");
            if (techniques.isEmpty()) {
                md.append("\nNone yet.\n");
            }
            for (Technique<?> technique : techniques) {
                md.append("\n### `").append(technique.id()).append("`\n\n");
                assertTrue(!technique.summary().isBlank(), technique.id() + " has no summary");
                md.append(technique.summary()).append("\n");
                if (!technique.reference().isBlank()) {
                    md.append("\nReference: ").append(technique.reference()).append("\n");
                }
                if (!technique.parameters().isEmpty()) {
                    md.append("\n| parameter | default | allowed | meaning |\n| --- | --- | --- | --- |\n");
                    for (ParameterSpec spec : technique.parameters()) {
                        assertTrue(!spec.doc().isBlank(), technique.id() + "." + spec.name() + " has no doc");
                        md.append("| `").append(spec.name()).append("` | ")
                                .append(spec.required() ? "(required)" : "`" + spec.defaultText() + "`").append(" | ")
                                .append(spec.allowed()).append(" | ").append(cell(spec.doc())).append(" |\n");
                    }
                }
            }
        }
        compareOrWrite(DOCS.resolve("techniques.md"), md.toString());
    }

    @Test
    void goalReferenceMatchesThePluginDescriptor() throws Exception {
        // target/classes (or the redirected build directory) beside this test's own class folder.
        Path classes = Path.of(getClass().getProtectionDomain().getCodeSource().getLocation().toURI()).getParent()
                .resolve("classes");
        Path descriptor = classes.resolve("META-INF/maven/plugin.xml");
        DocumentBuilderFactory factory = DocumentBuilderFactory.newInstance();
        Document doc = factory.newDocumentBuilder().parse(descriptor.toFile());
        StringBuilder md = new StringBuilder();
        md.append("# Goal reference\n\n")
                .append("Generated from the plugin descriptor by `ReferenceDocsTest` (maven-plugin); a test fails when\n")
                .append("this page and the mojos disagree. `mvn kiln:help -Ddetail -Dgoal=<goal>` prints the same.\n")
                .append("Every parameter with a property can also be set on the command line: `-D<property>=value`.\n");
        NodeList mojos = doc.getElementsByTagName("mojo");
        for (int i = 0; i < mojos.getLength(); i++) {
            Element mojo = (Element) mojos.item(i);
            String goal = child(mojo, "goal");
            if (goal.equals("help")) {
                continue;
            }
            md.append("\n## `kiln:").append(goal).append("`\n\n").append(clean(child(mojo, "description")))
                    .append("\n");
            String phase = child(mojo, "phase");
            if (!phase.isEmpty()) {
                md.append("\nDefault phase: `").append(phase).append("`.\n");
            }
            md.append("\n| parameter | property | default | meaning |\n| --- | --- | --- | --- |\n");
            Element parameters = (Element) mojo.getElementsByTagName("parameters").item(0);
            Element configuration = (Element) mojo.getElementsByTagName("configuration").item(0);
            NodeList params = parameters.getElementsByTagName("parameter");
            for (int p = 0; p < params.getLength(); p++) {
                Element param = (Element) params.item(p);
                if ("false".equals(child(param, "editable"))) {
                    continue;
                }
                String name = child(param, "name");
                String property = "";
                String defaultValue = "";
                NodeList configured = configuration.getElementsByTagName(name);
                if (configured.getLength() > 0) {
                    Element c = (Element) configured.item(0);
                    String expression = c.getTextContent().trim();
                    if (expression.startsWith("${") && expression.endsWith("}")) {
                        property = expression.substring(2, expression.length() - 1);
                    }
                    defaultValue = c.getAttribute("default-value");
                }
                String description = clean(child(param, "description"));
                assertTrue(!description.isBlank(), "kiln:" + goal + " parameter " + name + " has no description");
                md.append("| `").append(name).append("` | ").append(property.isEmpty() ? "" : "`" + property + "`")
                        .append(" | ").append(defaultValue.isEmpty() ? "" : "`" + defaultValue + "`").append(" | ")
                        .append(cell(description)).append(" |\n");
            }
            String example = example(goal);
            if (example != null) {
                md.append("\nExample (from the integration test that runs it, `").append(EXAMPLES.get(goal))
                        .append("`):\n\n```xml\n").append(example).append("\n```\n");
            }
        }
        compareOrWrite(DOCS.resolve("goals.md"), md.toString());
    }

    /** The integration test whose pom serves as each goal's example: it runs in CI, so the example works. */
    private static final java.util.Map<String, String> EXAMPLES = java.util.Map.of(
            "train", "it/src/it/train-cutmix/pom.xml",
            "merge", "it/src/it/merge-ties/pom.xml",
            "compress", "it/src/it/compress-int8/pom.xml",
            "soup", "it/src/it/compress-soup/pom.xml",
            "benchmark", "it/src/it/lm-train-benchmark/pom.xml");

    /** The {@code <execution>} of {@code goal} in its example IT pom, with IT placeholders replaced. */
    private static String example(String goal) throws IOException {
        String path = EXAMPLES.get(goal);
        if (path == null) {
            return null;
        }
        String pom = Files.readString(DOCS.getParent().resolve(path), StandardCharsets.UTF_8);
        java.util.regex.Matcher m = java.util.regex.Pattern.compile(
                "( *)<execution>(?:(?!</execution>).)*<goal>" + goal + "</goal>.*?</execution>",
                java.util.regex.Pattern.DOTALL).matcher(pom);
        assertTrue(m.find(), path + " has no execution of goal " + goal);
        String indent = m.group(1);
        StringBuilder out = new StringBuilder();
        for (String line : m.group().split("\n")) {
            out.append(line.startsWith(indent) ? line.substring(indent.length()) : line.strip()).append('\n');
        }
        return out.toString().strip().replace("@kiln.data@", "${project.basedir}/data/fashion-mnist-mini");
    }

    private static String child(Element element, String name) {
        NodeList nodes = element.getElementsByTagName(name);
        for (int i = 0; i < nodes.getLength(); i++) {
            if (nodes.item(i).getParentNode() == element) {
                return nodes.item(i).getTextContent().trim();
            }
        }
        return "";
    }

    private static String clean(String html) {
        return html.replaceAll("<[^>]+>", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
                .replaceAll("\\s+", " ").trim();
    }

    private static String cell(String text) {
        return text.replace("|", "\\|").replace("\n", " ");
    }

    private static void compareOrWrite(Path file, String expected) throws IOException {
        if (UPDATE) {
            Files.writeString(file, expected, StandardCharsets.UTF_8);
            return;
        }
        String actual = Files.exists(file) ? Files.readString(file, StandardCharsets.UTF_8) : "(missing)";
        assertEquals(expected, actual, file + " is out of date with the code; regenerate it with"
                + " -Dkiln.docs.update=true (see ReferenceDocsTest)");
    }
}
