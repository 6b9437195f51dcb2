package dev.kiln.benchmarks;

/** Does nothing: the baseline process for {@link WorkerStartBenchmark}. */
public final class NoopMain {
    private NoopMain() {
    }

    public static void main(String[] args) {
        // Intentionally empty.
    }
}
