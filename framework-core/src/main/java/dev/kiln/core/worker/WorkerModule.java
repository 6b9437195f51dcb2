package dev.kiln.core.worker;

import com.google.inject.AbstractModule;
import com.google.inject.Provides;
import com.google.inject.Singleton;
import com.google.inject.multibindings.MapBinder;
import dev.kiln.spi.Registry;

/**
 * Wires the worker: the technique registry (discovered once, from the loader that holds the SPI and every technique
 * jar) and the goals by name. A new goal is one more {@code addBinding} line.
 */
public class WorkerModule extends AbstractModule {
    private final ClassLoader techniqueLoader;

    public WorkerModule(ClassLoader techniqueLoader) {
        this.techniqueLoader = techniqueLoader;
    }

    @Override
    protected void configure() {
        MapBinder<String, Goal> goals = MapBinder.newMapBinder(binder(), String.class, Goal.class);
        goals.addBinding("list").to(ListGoal.class);
        goals.addBinding("ping").to(PingGoal.class);
        goals.addBinding("merge").to(dev.kiln.core.merge.MergeGoal.class);
        goals.addBinding("train").to(TrainGoal.class);
        goals.addBinding("benchmark").to(dev.kiln.core.bench.BenchmarkGoal.class);
        goals.addBinding("compress").to(dev.kiln.core.compress.CompressGoal.class);
        goals.addBinding("soup").to(dev.kiln.core.compress.SoupGoal.class);
    }

    @Provides
    @Singleton
    Registry registry() {
        return Registry.discover(techniqueLoader);
    }
}
