package dev.kiln.spi;

import java.net.URL;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Every technique found on a class loader, by kind and id.
 *
 * <p>Discovery goes through {@link ServiceLoader} with an explicit loader (never the thread's context loader, which
 * differs between Maven's threads) and fails with a message naming the class and jar when a provider cannot be
 * loaded, was built for an incompatible SPI, declares an invalid id, or claims an id another jar already has.
 */
public final class Registry {
    /** Lower-case words of letters and digits joined by single hyphens. */
    public static final Pattern ID_SYNTAX = Pattern.compile("[a-z][a-z0-9]*(-[a-z0-9]+)*");

    private final Map<Kind, Map<String, Technique<?>>> byKind;
    private final Map<Technique<?>, String> origins;

    private Registry(Map<Kind, Map<String, Technique<?>>> byKind, Map<Technique<?>, String> origins) {
        this.byKind = byKind;
        this.origins = origins;
    }

    /** Discovers the providers visible to {@code loader}. */
    public static Registry discover(ClassLoader loader) {
        List<TechniqueProvider> providers = new ArrayList<>();
        ServiceLoader<TechniqueProvider> serviceLoader = ServiceLoader.load(TechniqueProvider.class, loader);
        Iterator<ServiceLoader.Provider<TechniqueProvider>> found = serviceLoader.stream().iterator();
        while (true) {
            ServiceLoader.Provider<TechniqueProvider> provider;
            try {
                if (!found.hasNext()) {
                    break;
                }
                provider = found.next();
            } catch (ServiceConfigurationError e) {
                // A services file names a class that cannot be found or is not a provider.
                throw new KilnException("a technique jar lists a provider that cannot be loaded: " + e.getMessage()
                        + " (check META-INF/services/" + TechniqueProvider.class.getName()
                        + " in the jars under the plugin's <dependencies>)", e);
            }
            try {
                providers.add(provider.get());
            } catch (ServiceConfigurationError | LinkageError | RuntimeException e) {
                throw brokenProvider(provider, e);
            }
        }
        return of(providers);
    }

    /** Names the class and jar of a provider that could not be instantiated, with the root cause. */
    private static KilnException brokenProvider(ServiceLoader.Provider<TechniqueProvider> provider, Throwable e) {
        String type;
        String jar;
        try {
            type = provider.type().getName();
            jar = locate(provider.type());
        } catch (Throwable unknown) {
            type = "(unreadable)";
            jar = "(unknown jar)";
        }
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return new KilnException("technique provider " + type + " in " + jar + " could not be loaded: "
                + root, e);
    }

    /** Builds a registry from providers already instantiated (tests and embedded use). */
    public static Registry of(List<TechniqueProvider> providers) {
        Map<Kind, Map<String, Technique<?>>> byKind = new EnumMap<>(Kind.class);
        for (Kind kind : Kind.values()) {
            byKind.put(kind, new TreeMap<>());
        }
        Map<Technique<?>, String> origins = new LinkedHashMap<>();
        for (TechniqueProvider provider : providers) {
            String jar = locate(provider.getClass());
            String where = "technique provider " + provider.getClass().getName() + " in " + jar;
            String builtFor;
            List<Technique<?>> techniques;
            try {
                builtFor = provider.spiVersion();
                techniques = provider.techniques();
            } catch (LinkageError | RuntimeException e) {
                throw new KilnException(where + " failed to list its techniques: " + e
                        + " (was it built for another version of kiln-spi?)", e);
            }
            if (!KilnSpi.isCompatible(builtFor)) {
                throw new KilnException(where + " was built for Kiln SPI " + builtFor + ", but this Kiln runs SPI "
                        + KilnSpi.VERSION + "; use a version of that jar built for SPI " + KilnSpi.VERSION.split(
                                "\\.")[0] + ".x (at most " + KilnSpi.VERSION + ")");
            }
            for (Technique<?> technique : techniques) {
                String id = technique.id();
                Kind kind = technique.kind();
                if (id == null || !ID_SYNTAX.matcher(id).matches()) {
                    throw new KilnException(where + " declares the invalid id '" + id
                            + "': ids are lower-case words joined by '-', like 'task-arithmetic'");
                }
                if (kind == null) {
                    throw new KilnException(where + " declares technique '" + id + "' without a kind");
                }
                Technique<?> previous = byKind.get(kind).get(id);
                if (previous != null) {
                    throw new KilnException("duplicate " + kind.noun() + " id '" + id + "': declared by "
                            + previous.getClass().getName() + " in " + origins.get(previous) + " and by "
                            + technique.getClass().getName() + " in " + jar
                            + "; remove one of the jars from the plugin's <dependencies>");
                }
                byKind.get(kind).put(id, technique);
                origins.put(technique, jar);
            }
        }
        return new Registry(byKind, origins);
    }

    /** All techniques, by kind then id. */
    public List<Technique<?>> all() {
        List<Technique<?>> all = new ArrayList<>();
        for (Map<String, Technique<?>> techniques : byKind.values()) {
            all.addAll(techniques.values());
        }
        return Collections.unmodifiableList(all);
    }

    /** The techniques of one kind, sorted by id. */
    public List<Technique<?>> all(Kind kind) {
        return List.copyOf(byKind.get(kind).values());
    }

    /** The jar (or directory) a technique was loaded from. */
    public String origin(Technique<?> technique) {
        return origins.getOrDefault(technique, "(unknown)");
    }

    /** Looks a technique up; an unknown id fails with the closest valid id and the list of valid ids. */
    public Technique<?> find(Kind kind, String id) {
        Map<String, Technique<?>> techniques = byKind.get(kind);
        Technique<?> technique = techniques.get(id);
        if (technique != null) {
            return technique;
        }
        String suggestion = Names.closest(id, techniques.keySet());
        String known = techniques.isEmpty()
                ? "no " + kind.noun() + " is installed; add a technique jar to the plugin's <dependencies>"
                : "known " + kind.noun() + "s: " + String.join(", ", techniques.keySet());
        throw new KilnException("unknown " + kind.noun() + " '" + id + "'"
                + (suggestion == null ? "" : "; did you mean '" + suggestion + "'?") + " (" + known + ")");
    }

    /** Binds {@code rawParameters} and creates the operation, all validation done before any work. */
    public <T> T create(Kind kind, Class<T> type, String id, Map<String, String> rawParameters) {
        if (!type.equals(kind.operationType())) {
            throw new IllegalArgumentException(kind + " creates " + kind.operationType().getName() + ", not "
                    + type.getName());
        }
        Technique<?> technique = find(kind, id);
        Parameters parameters = Parameters.bind(technique, rawParameters);
        Object operation = technique.create(parameters);
        if (!type.isInstance(operation)) {
            throw new KilnException(kind.noun() + " '" + id + "' from " + origin(technique) + " created "
                    + (operation == null ? "null" : operation.getClass().getName()) + " instead of a "
                    + type.getSimpleName());
        }
        return type.cast(operation);
    }

    static String locate(Class<?> type) {
        CodeSource source = type.getProtectionDomain() == null ? null : type.getProtectionDomain().getCodeSource();
        URL location = source == null ? null : source.getLocation();
        return location == null ? "(unknown jar)" : location.getPath();
    }
}
