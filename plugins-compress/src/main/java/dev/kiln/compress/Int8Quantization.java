package dev.kiln.compress;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.compress.CompressedTensor;
import dev.kiln.spi.compress.Compressor;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Weight-only symmetric int8 quantization with one scale per output channel: {@code scale_c = max|w_c| / 127},
 * {@code q = round(w / scale_c)} clipped to [-127, 127] (the symmetric range; -128 is never used).
 *
 * <p>Stored: {@code ".q"} int8 of the original shape and {@code ".scale"} float32 [out]; the reconstruction is
 * {@code q * scale_c}. An all-zero channel gets scale 0 and q 0 (no division by zero, no NaN).
 */
public final class Int8Quantization implements Compressor {

    @Override
    public CompressedTensor compress(String name, NDArray weight) {
        NDManager owner = weight.getManager();
        try (NDManager scope = owner.newSubManager(weight.getDevice())) {
            NDArray w = Weights.prepare("int8", name, weight, scope);
            Shape shape = w.getShape();
            NDArray matrix = Weights.asMatrix("int8", name, w);
            NDArray scale = matrix.abs().max(new int[] {1}, true).div(127f);
            // A zero channel divides by 1 instead of 0; its q is 0 either way and its stored scale stays 0.
            NDArray divisor = scale.add(scale.eq(0f).toType(DataType.FLOAT32, false));
            // The float->int8 cast truncates toward zero, so round first; clip guards the last ulp of max/127.
            NDArray q = matrix.div(divisor).round().clip(-127, 127);
            NDArray reconstruction = q.mul(scale).reshape(shape);
            Map<String, NDArray> stored = new LinkedHashMap<>();
            stored.put(".q", q.toType(DataType.INT8, false).reshape(shape));
            stored.put(".scale", scale.reshape(shape.get(0)));
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put("format", "int8-symmetric-per-channel");
            metadata.put("axis", "0");
            metadata.put("qmax", "127");
            return Weights.result(owner, stored, reconstruction, metadata);
        }
    }
}
