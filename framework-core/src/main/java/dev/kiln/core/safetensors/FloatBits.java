package dev.kiln.core.safetensors;

/**
 * Bit-level conversions between float32 and the 16-bit float formats, done in Java because BF16 must never reach DJL
 * (it aborts the JVM) and because Java 17 has no float16 conversion of its own.
 *
 * <p>Narrowing rounds to nearest, ties to even, like IEEE 754 and PyTorch; NaN stays NaN (quiet) with its sign.
 */
public final class FloatBits {

    private FloatBits() {}

    /** The float32 value of a bfloat16 bit pattern (exact). */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    /** The bfloat16 nearest to {@code value}. */
    public static short floatToBf16(float value) {
        int x = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            // Keep sign and the top payload bits, and force the quiet bit so truncation cannot turn NaN into Inf.
            return (short) ((x >>> 16) | 0x0040);
        }
        int roundingBias = 0x7fff + ((x >>> 16) & 1);
        return (short) ((x + roundingBias) >>> 16);
    }

    /** The float32 value of an IEEE binary16 bit pattern (exact, subnormals included). */
    public static float f16ToFloat(short bits) {
        int h = bits & 0xffff;
        int sign = (h & 0x8000) << 16;
        int exponent = (h >>> 10) & 0x1f;
        int mantissa = h & 0x3ff;
        if (exponent == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mantissa << 13));
        }
        if (exponent == 0) {
            // Zero or subnormal: mantissa * 2^-24, which float32 holds exactly.
            float magnitude = mantissa * 0x1p-24f;
            return sign != 0 ? -magnitude : magnitude;
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    /** The binary16 nearest to {@code value}; overflow gives infinity, underflow (signed) zero. */
    public static short floatToF16(float value) {
        int x = Float.floatToRawIntBits(value);
        int sign = (x >>> 16) & 0x8000;
        int exponent = (x >>> 23) & 0xff;
        int mantissa = x & 0x7fffff;
        if (exponent == 0xff) {
            if (mantissa == 0) {
                return (short) (sign | 0x7c00);
            }
            return (short) (sign | 0x7c00 | 0x200 | (mantissa >>> 13));
        }
        int e = exponent - 127 + 15;
        if (e >= 0x1f) {
            return (short) (sign | 0x7c00);
        }
        if (e <= 0) {
            if (e < -10) {
                return (short) sign;
            }
            // Subnormal result: shift the full significand (implicit bit included) into the 10-bit field.
            int significand = mantissa | 0x800000;
            int shift = 14 - e;
            int h = significand >>> shift;
            int rest = significand & ((1 << shift) - 1);
            int half = 1 << (shift - 1);
            if (rest > half || (rest == half && (h & 1) == 1)) {
                h++; // may carry into the smallest normal, whose encoding is exactly h = 0x400
            }
            return (short) (sign | h);
        }
        int h = (e << 10) | (mantissa >>> 13);
        int rest = mantissa & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1)) {
            h++; // a carry out of the mantissa correctly bumps the exponent, up to infinity (0x7c00)
        }
        return (short) (sign | h);
    }
}
