package dev.kiln.core.encoder;

import java.util.List;
import java.util.Map;

/**
 * The parts of an ONNX model that weight import needs: the node list (for tracing which anonymous initializer feeds
 * which named bias), the float initializers, and the graph's input and output names.
 *
 * @param nodes the graph's nodes in file order
 * @param initializers float initializers by name, in file order
 * @param inputs the graph input names (initializers listed as inputs by old exporters are included)
 * @param outputs the graph output names
 */
public record OnnxGraph(List<Node> nodes, Map<String, OnnxTensor> initializers, List<String> inputs,
        List<String> outputs) {

    /**
     * One ONNX node.
     *
     * @param name the node name (may be empty)
     * @param opType the operator, e.g. {@code MatMul}
     * @param inputs the input value names
     * @param outputs the output value names
     */
    public record Node(String name, String opType, List<String> inputs, List<String> outputs) {
    }
}
