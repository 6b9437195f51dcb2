package dev.kiln.core.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkerTest {
    @TempDir
    Path dir;

    private static WorkerRequest request(String goal, String field, String value) {
        ObjectNode config = JsonNodeFactory.instance.objectNode();
        if (field != null) {
            config.put(field, value);
        }
        return new WorkerRequest(goal, config, 1, null, false);
    }

    private static List<Path> testClassPath() {
        List<Path> entries = new ArrayList<>();
        for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
            entries.add(Path.of(entry));
        }
        return entries;
    }

    @Test
    void listRunsInProcessAndReportsTheDiscoveredTechniques() {
        List<Event> events = new ArrayList<>();
        int code = Worker.run(request("list", null, null), events::add, getClass().getClassLoader());
        assertEquals(Worker.EXIT_OK, code);
        String log = events.stream().map(e -> String.valueOf(e.message())).collect(Collectors.joining("\n"));
        assertTrue(log.contains("test-ties - a test merge method"), log);
        assertTrue(log.contains("density = 0.2   [0.0, 1.0]   kept fraction"), log);
        Event last = events.get(events.size() - 1);
        assertEquals("result", last.type());
        assertEquals(List.of("merge:test-ties"), last.data().get("techniques"));
    }

    @Test
    void unknownTechniqueIsAUserErrorWithASuggestion() {
        List<Event> events = new ArrayList<>();
        int code = Worker.run(request("list", "describe", "merge:test-tie"), events::add, getClass().getClassLoader());
        assertEquals(Worker.EXIT_USER_ERROR, code);
        Event error = events.get(events.size() - 1);
        assertEquals("error", error.type());
        assertEquals("user", error.data().get("kind"));
        assertTrue(error.message().contains("did you mean 'test-ties'?"), error.message());
    }

    @Test
    void unknownGoalListsTheGoals() {
        List<Event> events = new ArrayList<>();
        int code = Worker.run(request("trian", null, null), events::add, getClass().getClassLoader());
        assertEquals(Worker.EXIT_USER_ERROR, code);
        assertTrue(events.get(0).message().contains("unknown goal 'trian'"), events.get(0).message());
    }

    @Test
    void forkedWorkerStartsTheEngineAndStreamsJsonEvents() throws Exception {
        List<Event> events = new ArrayList<>();
        List<String> stderr = new ArrayList<>();
        WorkerLauncher.Outcome outcome = WorkerLauncher.launch(request("ping", null, null), testClassPath(),
                new WorkerLauncher.Options(WorkerLauncher.Options.currentJava(), List.of(), java.util.Map.of(),
                        dir), events::add, stderr::add);
        assertEquals(Worker.EXIT_OK, outcome.exitCode(), "stderr: " + stderr);
        assertEquals("PyTorch", outcome.result().get("engine"));
        assertTrue(events.stream().anyMatch(e -> e.message() != null && e.message().contains("ready in")), events
                .toString());
        try (var files = Files.list(dir)) {
            assertEquals(0, files.count(), "request and argument files are removed");
        }
        if (System.getenv("GLIBC_TUNABLES") == null) {
            assertEquals(WorkerLauncher.MALLOC_TUNABLES, outcome.result().get("glibcTunables"),
                    "the worker keeps malloc'd memory unless told otherwise");
        }
        WorkerLauncher.Outcome told = WorkerLauncher.launch(request("ping", null, null), testClassPath(),
                new WorkerLauncher.Options(WorkerLauncher.Options.currentJava(), List.of(),
                        java.util.Map.of("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"), dir), e -> { }, stderr::add);
        assertEquals("glibc.malloc.arena_max=2", told.result().get("glibcTunables"), "stderr: " + stderr);
    }

    @Test
    void forkedWorkerReportsAMalformedRequestAsAUserError() throws Exception {
        Path bad = dir.resolve("bad.json");
        Files.writeString(bad, "{\"goal\": \"list\", \"goal\": \"ping\"}");
        Process process = new ProcessBuilder(WorkerLauncher.Options.currentJava().toString(), "-cp",
                System.getProperty("java.class.path"), Worker.class.getName(), bad.toString()).start();
        String out = new String(process.getInputStream().readAllBytes());
        assertEquals(Worker.EXIT_USER_ERROR, process.waitFor());
        assertTrue(out.contains("is not a valid request"), out);
        assertTrue(out.contains("Duplicate field 'goal'"), out);
        assertFalse(out.contains("Exception"), out);
    }

    @Test
    void orphanedWorkerExitsWhenItsParentPipeCloses() throws Exception {
        // A worker whose goal would never finish: the request names a goal that does not exist, but the parent
        // watch starts first; closing stdin must end the process with EXIT_ORPHANED before or instead of the goal.
        Path requestFile = dir.resolve("r.json");
        Files.writeString(requestFile, Json.MAPPER.writeValueAsString(request("ping", null, null)));
        Process process = new ProcessBuilder(WorkerLauncher.Options.currentJava().toString(), "-cp",
                System.getProperty("java.class.path"), Worker.class.getName(), requestFile.toString(),
                "--watch-parent").start();
        process.getOutputStream().close();
        int code = process.waitFor();
        assertEquals(Worker.EXIT_ORPHANED, code);
    }
}
