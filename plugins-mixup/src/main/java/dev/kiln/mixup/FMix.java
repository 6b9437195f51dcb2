package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;

/**
 * FMix (Harris et al., arXiv 2002.12047): binary masks made by thresholding low-pass filtered noise.
 *
 * <p>A complex Gaussian spectrum on the real-FFT half plane is scaled by {@code 1 / max(f, 1/max(H, W))^decay}
 * and brought back with an inverse 2-D FFT; the {@code round(lam * H * W)} largest pixels become 1 (kept from the
 * sample), the rest come from the partner. Ranking instead of a value threshold makes the count exact even with ties,
 * so the target coefficient is exactly the mask mean.
 *
 * <p>The spectrum is drawn on the device. DJL's device sampler has no generator argument, so the engine's seed is set
 * from the run's seeded source first: the same run seed gives the same masks, at the price of re-seeding the
 * engine's global generator once per FMix batch.
 */
final class FMix extends MixingAugmentation {
    private final double alpha;
    private final double decayPower;
    private final Mixing.Mode mode;
    private final Mixing.Pairing pairing;
    /** The spectrum scale of the last image size seen; replaced when the size changes. */
    private volatile Filter filter;

    FMix(double alpha, double decayPower, Mixing.Mode mode, Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        super("fmix", smoothing, stopEpoch, true);
        this.alpha = alpha;
        this.decayPower = decayPower;
        this.mode = mode;
        this.pairing = pairing;
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        NDArray x = batch.inputs();
        int height = (int) x.getShape().get(2);
        int width = (int) x.getShape().get(3);
        long pixels = (long) height * width;
        long[] partner = Mixing.partners(n, pairing, context.random());
        int masks = mode == Mixing.Mode.BATCH ? 1 : n;
        double[] lam = BetaSampler.symmetric(context.random(), alpha, masks);
        double[] kept = new double[masks];
        long[] count = new long[masks];
        for (int i = 0; i < masks; i++) {
            count[i] = Math.round(lam[i] * pixels);
            kept[i] = (double) count[i] / pixels;
        }
        scope.getEngine().setRandomSeed(context.random().nextInt());
        NDArray noise = lowPassNoise(scope, masks, height, width, filter(height, width));
        double[] lamPerSample = masks == 1 ? Mixing.filled(n, kept[0]) : kept;
        NDArray targets = Mixing.mixedTargets(scope, batch, smoothing, partner, lamPerSample);
        if (masks == 1) {
            return new Mixed(pasteMask(scope, x, noise, count[0], partner), targets);
        }
        // rank[p] = position of pixel p in descending order; the top count[i] positions form the mask.
        NDArray order = noise.reshape(masks, pixels).argSort(1, false);
        NDArray rank = order.argSort(1, true);
        NDArray mask = rank.lt(scope.create(count).reshape(masks, 1)).reshape(masks, 1, height, width);
        NDArray mixed = Mixing.select(mask, x, Mixing.gather(scope, x, partner));
        return new Mixed(mixed, targets);
    }

    /**
     * One mask for the batch: the {@code keep} pixels with the largest noise come from each sample, the others from
     * its partner. Only the smaller of the two pixel sets is ranked, with a partial top-k instead of a full sort, so
     * the count stays exact; the mask is then applied as {@code u * w + v * (1 - w)}: broadcast multiplies that run
     * vectorised, where a broadcast select runs element by element and advanced indexing is slower still. With w
     * exactly 0 or 1 every output pixel is exactly one of its two sources (for finite inputs: a non-finite pixel would
     * leak into its pair as NaN, which a select would not do).
     */
    static NDArray pasteMask(NDManager scope, NDArray x, NDArray noise, long keep, long[] partner) {
        Shape shape = x.getShape();
        long pixels = shape.get(2) * shape.get(3);
        if (keep == 0) {
            return Mixing.gather(scope, x, partner);
        }
        if (keep == pixels) {
            return x.duplicate();
        }
        // The smaller set: the kept pixels (largest noise) or the partner's (smallest noise); either way exactly keep
        // pixels remain the sample's.
        boolean smallIsKept = keep <= pixels - keep;
        int small = (int) (smallIsKept ? keep : pixels - keep);
        NDArray where = noise.reshape(pixels).topK(small, 0, smallIsKept, false).get(1);
        DataType dtype = x.getDataType();
        NDArray w = scope.zeros(new Shape(pixels), dtype).put(where, scope.ones(new Shape(small), dtype))
                .reshape(1, 1, shape.get(2), shape.get(3));
        NDArray p = Mixing.gather(scope, x, partner);
        // w marks the small set: it holds the sample's own pixels when smallIsKept, the partner's otherwise.
        NDArray onW = smallIsKept ? x : p;
        NDArray offW = smallIsKept ? p : x;
        NDArray out = onW.mul(w);
        NDArray rest = offW == p ? p.muli(w.neg().addi(1)) : offW.mul(w.neg().addi(1));
        return out.addi(rest);
    }

    /** The spectrum scale 1 / max(f, 1/max(H, W))^decay on the rfft half plane (H, W/2+1), built once per size. */
    private float[] filter(int height, int width) {
        Filter f = filter;
        if (f == null || f.height != height || f.width != width) {
            f = new Filter(height, width, spectrumScale(height, width, decayPower));
            filter = f;
        }
        return f.scale;
    }

    private record Filter(int height, int width, float[] scale) {
    }

    /**
     * The scale of every rfft frequency (H x (W/2+1), row-major): it depends only on the size and the decay, so it is
     * computed once on the host (a few hundred values) and reused for every batch of that size.
     */
    static float[] spectrumScale(int height, int width, double decay) {
        int halfWidth = width / 2 + 1;
        // The floor keeps the DC term finite; it is the lowest non-zero frequency of the larger side, as in FMix.
        double floor = 1.0 / Math.max(height, width);
        float[] scale = new float[height * halfWidth];
        for (int y = 0; y < height; y++) {
            double fy = frequency(y, height);
            for (int x = 0; x < halfWidth; x++) {
                double fx = frequency(x, width);
                scale[y * halfWidth + x] = (float) Math.pow(Math.max(Math.sqrt(fy * fy + fx * fx), floor), -decay);
            }
        }
        return scale;
    }

    /** numpy's fftfreq(n)[k] (cycles per sample): indices past the Nyquist point stand for negative frequencies. */
    private static double frequency(int k, int n) {
        return (k >= (n + 1) / 2 ? k - n : k) / (double) n;
    }

    /** Real noise fields (M, H, W) whose spectrum decays as 1 / f^decay. */
    static NDArray lowPassNoise(NDManager scope, int count, int height, int width, double decay) {
        return lowPassNoise(scope, count, height, width, spectrumScale(height, width, decay));
    }

    /** Real noise fields (M, H, W) from a complex Gaussian spectrum scaled by {@code scale} (see spectrumScale). */
    static NDArray lowPassNoise(NDManager scope, int count, int height, int width, float[] scale) {
        int halfWidth = width / 2 + 1;
        // Real and imaginary parts drawn together as the trailing pair of one Gaussian array, scaled in place.
        NDArray spectrum = scope.randomNormal(new Shape(count, height, halfWidth, 2))
                .muli(scope.create(scale, new Shape(1, height, halfWidth, 1)))
                .complex();
        return spectrum.ifft(height, 1).irfft(width, 2).toType(DataType.FLOAT32, false);
    }
}
