package dev.kiln.core.encoder;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import dev.kiln.spi.KilnException;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the graph and float initializers of an ONNX model straight from the protobuf wire format.
 *
 * <p>Fields are read by number with {@link CodedInputStream} instead of generated classes: weight import needs only a
 * handful of fields, and this avoids a protoc step in the build. Field numbers follow onnx.proto (ModelProto.graph=7;
 * GraphProto node=1, initializer=5, input=11, output=12; NodeProto input=1, output=2, name=3, op_type=4; TensorProto
 * dims=1, data_type=2, float_data=4, name=8, raw_data=9, data_location=14; ValueInfoProto name=1). Everything else
 * is skipped, so newer files with extra fields still read.
 */
public final class OnnxModelReader {
    private static final int MODEL_GRAPH = 7;
    private static final int GRAPH_NODE = 1;
    private static final int GRAPH_INITIALIZER = 5;
    private static final int GRAPH_INPUT = 11;
    private static final int GRAPH_OUTPUT = 12;
    private static final int NODE_INPUT = 1;
    private static final int NODE_OUTPUT = 2;
    private static final int NODE_NAME = 3;
    private static final int NODE_OP_TYPE = 4;
    private static final int TENSOR_DIMS = 1;
    private static final int TENSOR_DATA_TYPE = 2;
    private static final int TENSOR_FLOAT_DATA = 4;
    private static final int TENSOR_NAME = 8;
    private static final int TENSOR_RAW_DATA = 9;
    private static final int TENSOR_DATA_LOCATION = 14;
    private static final int VALUE_INFO_NAME = 1;
    /** TensorProto.DataType.FLOAT. */
    private static final int ONNX_FLOAT = 1;
    /** TensorProto.DataLocation.EXTERNAL. */
    private static final int LOCATION_EXTERNAL = 1;

    private final String source;

    private OnnxModelReader(String source) {
        this.source = source;
    }

    /** Reads an ONNX model file. */
    public static OnnxGraph read(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new KilnException("ONNX model file " + file + " does not exist or is not a regular file");
        }
        try (InputStream in = new BufferedInputStream(Files.newInputStream(file), 1 << 16)) {
            return read(in, file.toString());
        } catch (IOException e) {
            throw new KilnException("could not read ONNX model " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads an ONNX model from a stream (not closed here).
     *
     * @param source a name for the stream, used in error messages
     */
    public static OnnxGraph read(InputStream in, String source) {
        OnnxModelReader reader = new OnnxModelReader(source);
        CodedInputStream cis = CodedInputStream.newInstance(in);
        // Models are often far above protobuf's 64 MB default; 2 GB is the format's own ceiling.
        cis.setSizeLimit(Integer.MAX_VALUE);
        try {
            OnnxGraph graph = null;
            int tag;
            while ((tag = cis.readTag()) != 0) {
                if (WireFormat.getTagFieldNumber(tag) == MODEL_GRAPH
                        && WireFormat.getTagWireType(tag) == WireFormat.WIRETYPE_LENGTH_DELIMITED) {
                    int limit = cis.pushLimit(cis.readRawVarint32());
                    graph = reader.readGraph(cis);
                    cis.popLimit(limit);
                } else if (!cis.skipField(tag)) {
                    break;
                }
            }
            if (graph == null) {
                throw new KilnException("ONNX model " + source + " has no graph (field 7 of ModelProto): "
                        + "is this an ONNX file?");
            }
            return graph;
        } catch (IOException e) {
            throw new KilnException("ONNX model " + source + " is not a valid protobuf ModelProto: "
                    + e.getMessage(), e);
        }
    }

    private OnnxGraph readGraph(CodedInputStream cis) throws IOException {
        List<OnnxGraph.Node> nodes = new ArrayList<>();
        Map<String, OnnxTensor> initializers = new LinkedHashMap<>();
        List<String> inputs = new ArrayList<>();
        List<String> outputs = new ArrayList<>();
        int tag;
        while ((tag = cis.readTag()) != 0) {
            int field = WireFormat.getTagFieldNumber(tag);
            boolean message = WireFormat.getTagWireType(tag) == WireFormat.WIRETYPE_LENGTH_DELIMITED;
            if (message && field == GRAPH_NODE) {
                int limit = cis.pushLimit(cis.readRawVarint32());
                nodes.add(readNode(cis));
                cis.popLimit(limit);
            } else if (message && field == GRAPH_INITIALIZER) {
                int limit = cis.pushLimit(cis.readRawVarint32());
                OnnxTensor t = readTensor(cis);
                cis.popLimit(limit);
                if (t != null) {
                    initializers.put(t.name(), t);
                }
            } else if (message && (field == GRAPH_INPUT || field == GRAPH_OUTPUT)) {
                int limit = cis.pushLimit(cis.readRawVarint32());
                String name = readValueInfoName(cis);
                cis.popLimit(limit);
                (field == GRAPH_INPUT ? inputs : outputs).add(name);
            } else if (!cis.skipField(tag)) {
                break;
            }
        }
        return new OnnxGraph(List.copyOf(nodes), initializers, List.copyOf(inputs), List.copyOf(outputs));
    }

    private static OnnxGraph.Node readNode(CodedInputStream cis) throws IOException {
        List<String> in = new ArrayList<>();
        List<String> out = new ArrayList<>();
        String name = "";
        String op = "";
        int tag;
        while ((tag = cis.readTag()) != 0) {
            switch (WireFormat.getTagFieldNumber(tag)) {
                case NODE_INPUT -> in.add(cis.readStringRequireUtf8());
                case NODE_OUTPUT -> out.add(cis.readStringRequireUtf8());
                case NODE_NAME -> name = cis.readStringRequireUtf8();
                case NODE_OP_TYPE -> op = cis.readStringRequireUtf8();
                default -> cis.skipField(tag);
            }
        }
        return new OnnxGraph.Node(name, op, List.copyOf(in), List.copyOf(out));
    }

    private static String readValueInfoName(CodedInputStream cis) throws IOException {
        String name = "";
        int tag;
        while ((tag = cis.readTag()) != 0) {
            if (WireFormat.getTagFieldNumber(tag) == VALUE_INFO_NAME) {
                name = cis.readStringRequireUtf8();
            } else {
                cis.skipField(tag);
            }
        }
        return name;
    }

    /** Returns the tensor if it is an inline float tensor; other types (int64 shape constants) are skipped. */
    private OnnxTensor readTensor(CodedInputStream cis) throws IOException {
        List<Long> dims = new ArrayList<>();
        int dataType = 0;
        String name = "";
        ByteBuffer raw = null;
        float[] floats = null;
        int floatCount = 0;
        boolean external = false;
        int tag;
        while ((tag = cis.readTag()) != 0) {
            int wire = WireFormat.getTagWireType(tag);
            switch (WireFormat.getTagFieldNumber(tag)) {
                case TENSOR_DIMS -> {
                    if (wire == WireFormat.WIRETYPE_LENGTH_DELIMITED) {
                        int limit = cis.pushLimit(cis.readRawVarint32());
                        while (cis.getBytesUntilLimit() > 0) {
                            dims.add(cis.readInt64());
                        }
                        cis.popLimit(limit);
                    } else {
                        dims.add(cis.readInt64());
                    }
                }
                case TENSOR_DATA_TYPE -> dataType = cis.readInt32();
                case TENSOR_NAME -> name = cis.readStringRequireUtf8();
                case TENSOR_RAW_DATA -> raw = cis.readBytes().asReadOnlyByteBuffer();
                case TENSOR_DATA_LOCATION -> external = cis.readEnum() == LOCATION_EXTERNAL;
                case TENSOR_FLOAT_DATA -> {
                    if (wire == WireFormat.WIRETYPE_LENGTH_DELIMITED) {
                        int length = cis.readRawVarint32();
                        int limit = cis.pushLimit(length);
                        floats = grow(floats, floatCount + length / Float.BYTES);
                        while (cis.getBytesUntilLimit() > 0) {
                            floats[floatCount++] = cis.readFloat();
                        }
                        cis.popLimit(limit);
                    } else {
                        floats = grow(floats, floatCount + 1);
                        floats[floatCount++] = cis.readFloat();
                    }
                }
                default -> cis.skipField(tag);
            }
        }
        if (dataType != ONNX_FLOAT) {
            return null;
        }
        if (external) {
            throw new KilnException("ONNX model " + source + ": initializer '" + name
                    + "' keeps its data in an external file, which Kiln does not read; re-export with the weights"
                    + " inside the .onnx");
        }
        long[] shape = dims.stream().mapToLong(Long::longValue).toArray();
        long count = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new KilnException("ONNX model " + source + ": initializer '" + name + "' has a negative dim "
                        + d);
            }
            count *= d;
        }
        float[] data;
        if (raw != null) {
            if (raw.remaining() != count * Float.BYTES) {
                throw new KilnException("ONNX model " + source + ": initializer '" + name + "' has "
                        + raw.remaining() + " raw bytes but shape " + dims + " needs " + count * Float.BYTES);
            }
            data = new float[(int) count];
            // ONNX raw_data is little-endian whatever the host.
            raw.order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(data);
        } else {
            if (floatCount != count) {
                throw new KilnException("ONNX model " + source + ": initializer '" + name + "' has " + floatCount
                        + " float_data values but shape " + dims + " needs " + count);
            }
            data = floats == null ? new float[0] : java.util.Arrays.copyOf(floats, floatCount);
        }
        return new OnnxTensor(name, shape, data);
    }

    private static float[] grow(float[] a, int need) {
        if (a == null) {
            return new float[Math.max(need, 16)];
        }
        return a.length >= need ? a : java.util.Arrays.copyOf(a, Math.max(need, a.length * 2));
    }
}
