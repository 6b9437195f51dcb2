package dev.kiln.core.safetensors;

import ai.djl.ndarray.types.DataType;

/**
 * The safetensors element types Kiln reads and writes, with their DJL counterparts.
 *
 * <p>Two types never reach DJL as themselves, because the PyTorch engine aborts the whole JVM (a native
 * {@code terminate}, no Java exception) when it meets them: BF16 is loaded as FLOAT32 (exact, since BF16 is the top
 * half of a float32) and I16 as INT32 (exact widening). Both conversions happen in Java.
 */
public enum DType {
    F64("F64", 8, DataType.FLOAT64),
    F32("F32", 4, DataType.FLOAT32),
    F16("F16", 2, DataType.FLOAT16),
    BF16("BF16", 2, DataType.FLOAT32),
    I64("I64", 8, DataType.INT64),
    I32("I32", 4, DataType.INT32),
    I16("I16", 2, DataType.INT32),
    I8("I8", 1, DataType.INT8),
    U8("U8", 1, DataType.UINT8),
    BOOL("BOOL", 1, DataType.BOOLEAN);

    private final String code;
    private final int size;
    private final DataType loaded;

    DType(String code, int size, DataType loaded) {
        this.code = code;
        this.size = size;
        this.loaded = loaded;
    }

    /** The name used in safetensors headers, e.g. {@code "BF16"}. */
    public String code() {
        return code;
    }

    /** Bytes per element. */
    public int byteSize() {
        return size;
    }

    /** Whether this is a floating-point type. */
    public boolean isFloating() {
        return this == F64 || this == F32 || this == F16 || this == BF16;
    }

    /** The DJL type an NDArray read from this dtype has (FLOAT32 for BF16, INT32 for I16; otherwise the same type). */
    public DataType loadedType() {
        return loaded;
    }

    /** Whether the bytes go to DJL unchanged (false for BF16 and I16, which are widened in Java). */
    public boolean loadsAsIs() {
        return this != BF16 && this != I16;
    }

    /** The dtype with header name {@code code}, or null when Kiln does not know it. */
    public static DType fromCode(String code) {
        for (DType t : values()) {
            if (t.code.equals(code)) {
                return t;
            }
        }
        return null;
    }

    /**
     * The safetensors dtype that stores a DJL array of type {@code type} without conversion, or null when there is
     * none (e.g. UINT32, STRING; BFLOAT16 and INT16 arrays cannot exist in Kiln since they crash the engine).
     */
    public static DType fromDjl(DataType type) {
        switch (type) {
            case FLOAT64:
                return F64;
            case FLOAT32:
                return F32;
            case FLOAT16:
                return F16;
            case INT64:
                return I64;
            case INT32:
                return I32;
            case INT8:
                return I8;
            case UINT8:
                return U8;
            case BOOLEAN:
                return BOOL;
            default:
                return null;
        }
    }
}
