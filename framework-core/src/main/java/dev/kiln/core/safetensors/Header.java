package dev.kiln.core.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Parsing and encoding of the safetensors JSON header, with every check the format requires. */
final class Header {

    /** Metadata key of the safetensors format. */
    static final String METADATA_KEY = "__metadata__";

    /** Largest header accepted; real ones are well under 10 MB even for thousands of tensors. */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

    /** Strict: a duplicated key must be an error, not "last one wins", and nothing may follow the object. */
    static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private static final String DUPLICATE_PREFIX = "Duplicate field '";

    final Map<String, String> metadata;
    final List<TensorInfo> tensors;

    private Header(Map<String, String> metadata, List<TensorInfo> tensors) {
        this.metadata = metadata;
        this.tensors = tensors;
    }

    /**
     * Parses and validates a header whose data section has {@code dataLength} bytes: every entry well formed, sizes
     * consistent with dtype and shape, and the data section covered exactly once (no gap, no overlap, nothing left).
     */
    static Header parse(Path file, byte[] json, long dataLength) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JacksonException e) {
            String msg = e.getOriginalMessage();
            if (msg != null && msg.startsWith(DUPLICATE_PREFIX)) {
                int end = msg.indexOf('\'', DUPLICATE_PREFIX.length());
                String name = end > 0 ? msg.substring(DUPLICATE_PREFIX.length(), end) : null;
                throw new CheckpointFormatException(file, name, "the header names this entry twice (duplicate JSON key)",
                        e);
            }
            throw new CheckpointFormatException(file, null, "the header is not valid JSON: " + msg, e);
        } catch (java.io.IOException e) {
            throw new CheckpointFormatException(file, null, "the header cannot be read: " + e, e);
        }
        if (root == null || !root.isObject()) {
            throw new CheckpointFormatException(file, "the header must be a JSON object but is "
                    + (root == null ? "empty" : root.getNodeType().toString().toLowerCase()));
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        List<TensorInfo> tensors = new ArrayList<>();
        Iterator<Map.Entry<String, JsonNode>> fields = root.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> field = fields.next();
            if (METADATA_KEY.equals(field.getKey())) {
                readMetadata(file, field.getValue(), metadata);
            } else {
                tensors.add(readEntry(file, field.getKey(), field.getValue(), dataLength));
            }
        }
        checkCoverage(file, tensors, dataLength);
        return new Header(Collections.unmodifiableMap(metadata), Collections.unmodifiableList(tensors));
    }

    private static void readMetadata(Path file, JsonNode node, Map<String, String> out) {
        if (!node.isObject()) {
            throw new CheckpointFormatException(file, METADATA_KEY + " must be an object of strings but is "
                    + node.getNodeType().toString().toLowerCase());
        }
        Iterator<Map.Entry<String, JsonNode>> it = node.fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new CheckpointFormatException(file, METADATA_KEY + " value of '" + e.getKey()
                        + "' must be a string but is " + e.getValue());
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
    }

    private static TensorInfo readEntry(Path file, String name, JsonNode node, long dataLength) {
        if (!node.isObject()) {
            throw new CheckpointFormatException(file, name, "the entry must be an object but is " + node);
        }
        JsonNode dtypeNode = require(file, name, node, "dtype");
        JsonNode shapeNode = require(file, name, node, "shape");
        JsonNode offsetsNode = require(file, name, node, "data_offsets");
        if (!dtypeNode.isTextual()) {
            throw new CheckpointFormatException(file, name, "dtype must be a string but is " + dtypeNode);
        }
        DType dtype = DType.fromCode(dtypeNode.textValue());
        if (dtype == null) {
            throw new CheckpointFormatException(file, name, "unknown dtype \"" + dtypeNode.textValue()
                    + "\"; Kiln reads " + Arrays.toString(DType.values()));
        }
        if (!shapeNode.isArray()) {
            throw new CheckpointFormatException(file, name, "shape must be an array of integers but is " + shapeNode);
        }
        long[] shape = new long[shapeNode.size()];
        for (int i = 0; i < shape.length; i++) {
            JsonNode d = shapeNode.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong()) {
                throw new CheckpointFormatException(file, name, "shape dimension " + i + " is not a 64-bit integer: "
                        + d + " in " + shapeNode);
            }
            if (d.longValue() < 0) {
                throw new CheckpointFormatException(file, name, "shape has a negative dimension " + d.longValue()
                        + " in " + shapeNode);
            }
            shape[i] = d.longValue();
        }
        if (!offsetsNode.isArray() || offsetsNode.size() != 2) {
            throw new CheckpointFormatException(file, name, "data_offsets must be [begin, end] but is " + offsetsNode);
        }
        long[] offsets = new long[2];
        for (int i = 0; i < 2; i++) {
            JsonNode o = offsetsNode.get(i);
            if (!o.isIntegralNumber() || !o.canConvertToLong() || o.longValue() < 0) {
                throw new CheckpointFormatException(file, name, "data_offsets must be two non-negative 64-bit integers"
                        + " but is " + offsetsNode);
            }
            offsets[i] = o.longValue();
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end) {
            throw new CheckpointFormatException(file, name, "data_offsets " + offsetsNode + " end before they begin");
        }
        if (end > dataLength) {
            throw new CheckpointFormatException(file, name, "data_offsets " + offsetsNode
                    + " are out of range of the data section, which has " + dataLength + " bytes");
        }
        long expected;
        try {
            expected = Math.multiplyExact(TensorInfo.elementCount(shape), (long) dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new CheckpointFormatException(file, name, "dtype " + dtype + " with shape " + shapeNode
                    + " overflows a 64-bit byte count", e);
        }
        if (expected != end - begin) {
            throw new CheckpointFormatException(file, name, "dtype " + dtype + " with shape " + shapeNode + " needs "
                    + expected + " bytes but data_offsets " + offsetsNode + " hold " + (end - begin));
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static JsonNode require(Path file, String name, JsonNode entry, String key) {
        JsonNode value = entry.get(key);
        if (value == null || value.isNull()) {
            throw new CheckpointFormatException(file, name, "the entry has no " + key);
        }
        return value;
    }

    /** The safetensors spec requires the tensors to tile the data section: no gap, no overlap, no trailing bytes. */
    private static void checkCoverage(Path file, List<TensorInfo> tensors, long dataLength) {
        List<TensorInfo> sorted = new ArrayList<>(tensors);
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long cursor = 0;
        TensorInfo previous = null;
        for (TensorInfo t : sorted) {
            if (t.begin() < cursor) {
                throw new CheckpointFormatException(file, t.name(), "data_offsets [" + t.begin() + ", " + t.end()
                        + "] overlap tensor '" + previous.name() + "' at [" + previous.begin() + ", " + previous.end()
                        + "]");
            }
            if (t.begin() > cursor) {
                throw new CheckpointFormatException(file, t.name(), "data_offsets [" + t.begin() + ", " + t.end()
                        + "] leave a gap of " + (t.begin() - cursor) + " bytes at data offset " + cursor);
            }
            cursor = t.end();
            if (t.end() > t.begin()) {
                previous = t;
            }
        }
        if (cursor != dataLength) {
            throw new CheckpointFormatException(file, "the tensors cover " + cursor + " bytes of the data section but it"
                    + " has " + dataLength + " (trailing bytes no tensor describes)");
        }
    }

    /**
     * The header bytes for {@code specs} laid out in order, padded with spaces so that the data section starts at a
     * multiple of 8 (the length prefix is 8 bytes, so the JSON length itself is made a multiple of 8).
     */
    static byte[] encode(Path file, Map<String, String> metadata, List<TensorSpec> specs) {
        ObjectNode root = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = root.putObject(METADATA_KEY);
            metadata.forEach((k, v) -> {
                if (k == null || v == null) {
                    throw new CheckpointFormatException(file, "metadata entries must be non-null strings, got " + k
                            + " = " + v);
                }
                meta.put(k, v);
            });
        }
        long offset = 0;
        for (TensorSpec spec : specs) {
            if (METADATA_KEY.equals(spec.name())) {
                throw new CheckpointFormatException(file, spec.name(), "this name is reserved for the metadata");
            }
            if (root.has(spec.name())) {
                throw new CheckpointFormatException(file, spec.name(), "the tensor is listed twice");
            }
            long length;
            try {
                length = spec.byteLength();
            } catch (ArithmeticException e) {
                throw new CheckpointFormatException(file, spec.name(), "dtype " + spec.dtype() + " with shape "
                        + Arrays.toString(spec.shape()) + " overflows a 64-bit byte count", e);
            }
            ObjectNode entry = root.putObject(spec.name());
            entry.put("dtype", spec.dtype().code());
            ArrayNode shape = entry.putArray("shape");
            for (long d : spec.shape()) {
                shape.add(d);
            }
            long end = Math.addExact(offset, length);
            entry.putArray("data_offsets").add(offset).add(end);
            offset = end;
        }
        byte[] json;
        try {
            json = JSON.writeValueAsBytes(root);
        } catch (JacksonException e) {
            throw new CheckpointFormatException(file, null, "cannot encode the header: " + e.getOriginalMessage(), e);
        }
        int padded = (json.length + 7) & ~7;
        byte[] out = Arrays.copyOf(json, padded);
        Arrays.fill(out, json.length, padded, (byte) ' ');
        return out;
    }
}
