package dev.kiln.skip;

import dev.kiln.spi.KilnException;
import dev.kiln.spi.skip.ModelLayout;

/** Shared checks on the layout a policy is asked about. */
final class Layers {
    private Layers() {
    }

    static int count(ModelLayout layout, String policy) {
        if (layout == null) {
            throw new KilnException("skip policy '" + policy + "': model layout is missing");
        }
        if (layout.layers() < 1) {
            throw new KilnException("skip policy '" + policy + "': model layout has " + layout.layers()
                    + " layers; at least 1 is needed");
        }
        return layout.layers();
    }

    static void checkLayer(int layer, int layers, String policy) {
        if (layer < 0 || layer >= layers) {
            throw new KilnException("skip policy '" + policy + "': layer " + layer + " is outside 0.."
                    + (layers - 1));
        }
    }
}
