package dev.kiln.core.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.nn.Block;
import ai.djl.nn.ParallelBlock;
import ai.djl.nn.SequentialBlock;
import ai.djl.training.ParameterStore;
import ai.djl.util.Pair;
import dev.kiln.core.model.KilnModel;
import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.ModelLayout;
import dev.kiln.spi.skip.SkipSession;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs a zoo classifier stage by stage so that a skip policy can leave residual blocks out. Every variant, the
 * baseline included, goes through this same loop, so a measured speedup compares like with like.
 *
 * <p>A residual block of the zoo's ResNet is a {@link ParallelBlock} of (main branch, shortcut) whose outputs are
 * summed. Skipping it means keeping only the shortcut: the identity where the shape is unchanged, the strided 1x1
 * projection where a stage changes width, so the rest of the network still receives the shape it expects.
 */
public final class LayeredForward {
    private final List<Block> stages = new ArrayList<>();
    private final List<Integer> residualIndex = new ArrayList<>();
    private final int residualBlocks;

    /** Prepares {@code model}, whose top block must be sequential (all zoo models are). */
    public LayeredForward(KilnModel model) {
        Block top = model.block();
        if (!(top instanceof SequentialBlock)) {
            throw new KilnException("model '" + model.id() + "' is not a sequential network; cannot run it layer by"
                    + " layer");
        }
        int count = 0;
        for (Pair<String, Block> child : top.getChildren()) {
            stages.add(child.getValue());
            boolean residual = child.getValue() instanceof ParallelBlock
                    && child.getValue().getChildren().size() == 2;
            residualIndex.add(residual ? count++ : -1);
        }
        residualBlocks = count;
    }

    /** The layer structure a skip policy decides over: the residual blocks, in order. */
    public ModelLayout layout() {
        return new ModelLayout(residualBlocks, 0);
    }

    /** Number of residual blocks (0 for the mlp and cnn). */
    public int residualBlocks() {
        return residualBlocks;
    }

    /**
     * Logits in evaluation mode.
     *
     * @param session which residual blocks run, or null for all of them
     * @return the logits and the number of residual blocks that ran
     */
    public Output forward(ParameterStore store, NDArray inputs, SkipSession session) {
        NDList x = new NDList(inputs);
        int ran = 0;
        for (int i = 0; i < stages.size(); i++) {
            Block stage = stages.get(i);
            int layer = residualIndex.get(i);
            if (layer >= 0 && session != null && !session.runLayer(layer)) {
                Block shortcut = stage.getChildren().get(1).getValue();
                x = shortcut.forward(store, x, false);
                continue;
            }
            if (layer >= 0) {
                ran++;
            }
            x = stage.forward(store, x, false);
        }
        return new Output(x.singletonOrThrow(), ran);
    }

    /**
     * One forward pass's result.
     *
     * @param logits (N, K)
     * @param blocksRun residual blocks that ran
     */
    public record Output(NDArray logits, int blocksRun) {
    }
}
