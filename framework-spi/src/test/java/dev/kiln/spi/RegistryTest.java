package dev.kiln.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.spi.augment.Augmentation;
import dev.kiln.spi.fixtures.AlphaProvider;
import dev.kiln.spi.fixtures.BetaProvider;
import dev.kiln.spi.fixtures.DuplicateTiesProvider;
import dev.kiln.spi.fixtures.ExplodingProvider;
import dev.kiln.spi.fixtures.FutureProvider;
import dev.kiln.spi.merge.MergeMethod;
import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RegistryTest {
    @TempDir
    Path dir;

    /** Packs provider classes and a services file into a real jar, as a technique author's build would. */
    private Path jar(String name, String serviceLines, Class<?>... classes) throws IOException {
        Path jar = dir.resolve(name + ".jar");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
            out.putNextEntry(new JarEntry("META-INF/services/" + TechniqueProvider.class.getName()));
            out.write(serviceLines.getBytes(StandardCharsets.UTF_8));
            for (Class<?> type : classes) {
                String resource = type.getName().replace('.', '/') + ".class";
                out.putNextEntry(new JarEntry(resource));
                try (InputStream in = type.getClassLoader().getResourceAsStream(resource)) {
                    in.transferTo(out);
                }
            }
        }
        return jar;
    }

    /** A loader over the jars whose parent hides the fixture classes, so they really load from the jars. */
    private ClassLoader loaderOver(Path... jars) throws IOException {
        ClassLoader hiding = new ClassLoader(getClass().getClassLoader()) {
            @Override
            protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
                if (name.startsWith("dev.kiln.spi.fixtures.")) {
                    throw new ClassNotFoundException(name);
                }
                return super.loadClass(name, resolve);
            }

            @Override
            public URL getResource(String name) {
                return name.startsWith("META-INF/services/") ? null : super.getResource(name);
            }

            @Override
            public java.util.Enumeration<URL> getResources(String name) throws IOException {
                return name.startsWith("META-INF/services/") ? java.util.Collections.emptyEnumeration()
                        : super.getResources(name);
            }
        };
        URL[] urls = new URL[jars.length];
        for (int i = 0; i < jars.length; i++) {
            urls[i] = jars[i].toUri().toURL();
        }
        return new URLClassLoader(urls, hiding);
    }

    @Test
    void discoversTechniquesAcrossTwoJarsAndNamesTheirOrigin() throws IOException {
        Path a = jar("alpha", AlphaProvider.class.getName() + "\n", AlphaProvider.class);
        Path b = jar("beta", "# comment\n" + BetaProvider.class.getName() + "\n", BetaProvider.class);
        Registry registry = Registry.discover(loaderOver(a, b));

        assertEquals(2, registry.all().size());
        Technique<?> ties = registry.find(Kind.MERGE, "ties");
        Technique<?> cutout = registry.find(Kind.AUGMENT, "cutout");
        assertTrue(registry.origin(ties).endsWith("alpha.jar"), registry.origin(ties));
        assertTrue(registry.origin(cutout).endsWith("beta.jar"), registry.origin(cutout));
        assertEquals(List.of(ties), registry.all(Kind.MERGE));
        assertInstanceOf(MergeMethod.class, registry.create(Kind.MERGE, MergeMethod.class, "ties", Map.of()));
        assertInstanceOf(Augmentation.class, registry.create(Kind.AUGMENT, Augmentation.class, "cutout", Map.of()));
    }

    @Test
    void rejectsDuplicateIdsNamingBothJars() throws IOException {
        Path a = jar("alpha", AlphaProvider.class.getName(), AlphaProvider.class);
        Path dup = jar("dup", DuplicateTiesProvider.class.getName(), DuplicateTiesProvider.class);
        KilnException e = assertThrows(KilnException.class, () -> Registry.discover(loaderOver(a, dup)));
        assertTrue(e.getMessage().contains("duplicate merge method id 'ties'"), e.getMessage());
        assertTrue(e.getMessage().contains("alpha.jar"), e.getMessage());
        assertTrue(e.getMessage().contains("dup.jar"), e.getMessage());
    }

    @Test
    void unknownIdSuggestsTheClosestAndListsTheValidOnes() {
        Registry registry = Registry.of(List.of(new AlphaProvider(), new BetaProvider()));
        KilnException e = assertThrows(KilnException.class,
                () -> registry.create(Kind.MERGE, MergeMethod.class, "tie", Map.of()));
        assertEquals("unknown merge method 'tie'; did you mean 'ties'? (known merge methods: ties)", e.getMessage());

        KilnException far = assertThrows(KilnException.class, () -> registry.find(Kind.MERGE, "slerp"));
        assertTrue(!far.getMessage().contains("did you mean"), far.getMessage());

        KilnException none = assertThrows(KilnException.class, () -> registry.find(Kind.SKIP, "unified"));
        assertTrue(none.getMessage().contains("no skip policy is installed"), none.getMessage());
    }

    @Test
    void brokenProviderIsReportedWithItsClassAndJar() throws IOException {
        Path bad = jar("broken", ExplodingProvider.class.getName(), ExplodingProvider.class);
        KilnException e = assertThrows(KilnException.class, () -> Registry.discover(loaderOver(bad)));
        assertTrue(e.getMessage().contains(ExplodingProvider.class.getName()), e.getMessage());
        assertTrue(e.getMessage().contains("broken.jar"), e.getMessage());
        assertTrue(e.getMessage().contains("boom: missing native library"), e.getMessage());
    }

    @Test
    void missingProviderClassIsReported() throws IOException {
        Path bad = jar("ghost", "org.example.DoesNotExist\n");
        KilnException e = assertThrows(KilnException.class, () -> Registry.discover(loaderOver(bad)));
        assertTrue(e.getMessage().contains("org.example.DoesNotExist"), e.getMessage());
    }

    @Test
    void providerBuiltForAnotherSpiIsRefused() {
        KilnException e = assertThrows(KilnException.class, () -> Registry.of(List.of(new FutureProvider())));
        assertTrue(e.getMessage().contains("built for Kiln SPI 2.0"), e.getMessage());
        assertTrue(e.getMessage().contains(FutureProvider.class.getName()), e.getMessage());
        assertTrue(KilnSpi.isCompatible("1.0"));
        assertTrue(!KilnSpi.isCompatible("1.9"));
        assertTrue(!KilnSpi.isCompatible("garbage"));
    }

    @Test
    void invalidIdIsRefused() {
        TechniqueProvider badId = new TechniqueProvider() {
            @Override
            public String spiVersion() {
                return KilnSpi.VERSION;
            }

            @Override
            public List<Technique<?>> techniques() {
                return List.of(SimpleTechnique.of(Kind.MERGE, "Task_Arithmetic", "", List.of(), p -> null));
            }
        };
        KilnException e = assertThrows(KilnException.class, () -> Registry.of(List.of(badId)));
        assertTrue(e.getMessage().contains("invalid id 'Task_Arithmetic'"), e.getMessage());
    }

    @Test
    void writesNothingToStdout() {
        // The worker's stdout carries the event protocol; discovery must not print on it.
        java.io.PrintStream original = System.out;
        java.io.ByteArrayOutputStream captured = new java.io.ByteArrayOutputStream();
        System.setOut(new java.io.PrintStream(captured));
        try {
            Registry.discover(getClass().getClassLoader());
        } finally {
            System.setOut(original);
        }
        assertEquals(0, captured.size());
    }
}
