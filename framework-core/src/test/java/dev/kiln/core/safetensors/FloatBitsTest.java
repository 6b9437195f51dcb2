package dev.kiln.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** The 16-bit float conversions against references computed from the format definitions in double precision. */
class FloatBitsTest {

    /** binary16 value from its fields, by the IEEE 754 definition. */
    static double halfReference(int h) {
        int sign = (h >>> 15) & 1;
        int e = (h >>> 10) & 0x1f;
        int m = h & 0x3ff;
        double magnitude;
        if (e == 0x1f) {
            magnitude = m == 0 ? Double.POSITIVE_INFINITY : Double.NaN;
        } else if (e == 0) {
            magnitude = Math.scalb((double) m, -24);
        } else {
            magnitude = Math.scalb(1.0 + m / 1024.0, e - 15);
        }
        return sign == 1 ? -magnitude : magnitude;
    }

    @Test
    void everyHalfDecodesToItsDefinedValue() {
        for (int h = 0; h < 65536; h++) {
            float got = FloatBits.f16ToFloat((short) h);
            double want = halfReference(h);
            if (Double.isNaN(want)) {
                assertTrue(Float.isNaN(got), "pattern " + Integer.toHexString(h));
            } else {
                assertEquals(Double.doubleToRawLongBits(want), Double.doubleToRawLongBits(got),
                        "pattern " + Integer.toHexString(h));
            }
        }
    }

    @Test
    void everyNonNanHalfAndBf16RoundTrips() {
        for (int h = 0; h < 65536; h++) {
            float f16 = FloatBits.f16ToFloat((short) h);
            if (!Float.isNaN(f16)) {
                assertEquals((short) h, FloatBits.floatToF16(f16), "f16 " + Integer.toHexString(h));
            }
            float bf = FloatBits.bf16ToFloat((short) h);
            assertEquals(Float.intBitsToFloat(h << 16), bf, 0f);
            if (!Float.isNaN(bf)) {
                assertEquals((short) h, FloatBits.floatToBf16(bf), "bf16 " + Integer.toHexString(h));
            }
        }
    }

    /** Nearest-even rounding to binary16 by scanning the sorted positive halves. */
    static int halfNearest(float x) {
        if (Float.isNaN(x)) {
            return -1;
        }
        double a = Math.abs((double) x);
        int sign = (Float.floatToRawIntBits(x) >>> 31) << 15;
        if (a >= 65520.0) { // max half 65504 plus half an ulp (16) rounds to infinity
            return sign | 0x7c00;
        }
        int lo = 0;
        int hi = 0x7bff;
        while (lo < hi) { // largest half <= a
            int mid = (lo + hi + 1) >>> 1;
            if (halfReference(mid) <= a) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        int best = lo;
        if (lo < 0x7c00) {
            double below = a - halfReference(lo);
            double above = halfReference(lo + 1) - a;
            if (above < below || (above == below && (lo & 1) == 1)) {
                best = lo + 1;
            }
        }
        return sign | best;
    }

    /** Nearest-even rounding to bfloat16 between the two truncation neighbours. */
    static int bf16Nearest(float x) {
        int bits = Float.floatToRawIntBits(x);
        int down = bits >>> 16;
        int up = down + 1;
        double a = x;
        double dDown = Math.abs(a - Float.intBitsToFloat(down << 16));
        float upValue = Float.intBitsToFloat(up << 16);
        double dUp = Math.abs(Float.isNaN(upValue) ? Double.POSITIVE_INFINITY : upValue - a);
        if (Float.isInfinite(upValue)) {
            // Overflow threshold: halfway between the largest finite bf16 and the next power of two.
            dUp = Math.abs(Math.copySign(Math.scalb(1.0, 128), a) - a);
        }
        if (dUp < dDown || (dUp == dDown && (down & 1) == 1)) {
            return up & 0xffff;
        }
        return down & 0xffff;
    }

    @Test
    void narrowingRoundsToNearestEven() {
        Random random = new Random(7);
        float[] special = {0f, -0f, 65504f, 65519.99f, 65520f, -65520f, 1e-8f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f,
            6.1035156e-5f, 6.097555e-5f, 1f + 0x1p-11f, 1f + 0x1p-11f + 0x1p-23f, 1f + 3 * 0x1p-11f, Float.MAX_VALUE,
            Float.MIN_VALUE, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 3.3895314e38f, 3.3961776e38f};
        for (float f : special) {
            assertEquals(halfNearest(f), FloatBits.floatToF16(f) & 0xffff, "f16 of " + f);
            assertEquals(bf16Nearest(f), FloatBits.floatToBf16(f) & 0xffff, "bf16 of " + f);
        }
        for (int i = 0; i < 200_000; i++) {
            float f = i % 2 == 0
                    ? (float) (random.nextGaussian() * Math.pow(2, random.nextInt(40) - 28))
                    : Float.intBitsToFloat(random.nextInt());
            if (Float.isNaN(f)) {
                continue;
            }
            assertEquals(halfNearest(f), FloatBits.floatToF16(f) & 0xffff, "f16 of " + f);
            assertEquals(bf16Nearest(f), FloatBits.floatToBf16(f) & 0xffff, "bf16 of " + f);
        }
    }

    @Test
    void nanStaysNanWithItsSign() {
        for (int bits : new int[] {0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff}) {
            float nan = Float.intBitsToFloat(bits);
            assertTrue(Float.isNaN(FloatBits.f16ToFloat(FloatBits.floatToF16(nan))));
            assertTrue(Float.isNaN(FloatBits.bf16ToFloat(FloatBits.floatToBf16(nan))));
            assertEquals(bits >>> 31, (FloatBits.floatToF16(nan) >>> 15) & 1);
            assertEquals(bits >>> 31, (FloatBits.floatToBf16(nan) >>> 15) & 1);
        }
    }
}
