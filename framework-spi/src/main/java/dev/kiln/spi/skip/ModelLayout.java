package dev.kiln.spi.skip;

/**
 * The block structure a skip policy decides over.
 *
 * @param layers number of transformer (or residual) blocks
 * @param experts experts per MoE block, 0 for dense models
 */
public record ModelLayout(int layers, int experts) {
}
