package dev.kiln.mixup;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
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
        NDArray noise = lowPassNoise(scope, masks, height, width, decayPower);
        // rank[p] = position of pixel p in descending order; the top count[i] positions form the mask.
        NDArray order = noise.reshape(masks, pixels).argSort(1, false);
        NDArray rank = order.argSort(1, true);
        NDArray mask = rank.lt(scope.create(count).reshape(masks, 1)).reshape(masks, 1, height, width);
        NDArray mixed = Mixing.select(mask, x, Mixing.gather(scope, x, partner));
        double[] lamPerSample = masks == 1 ? Mixing.filled(n, kept[0]) : kept;
        NDArray targets = Mixing.mixTargets(scope, Mixing.smoothedTargets(batch, smoothing), partner, lamPerSample);
        return new Mixed(mixed, targets);
    }

    /** Real noise fields (M, H, W) whose spectrum decays as 1 / f^decay. */
    static NDArray lowPassNoise(NDManager scope, int count, int height, int width, double decay) {
        int halfWidth = width / 2 + 1;
        NDArray fy = frequencies(scope, height, height).reshape(height, 1);
        NDArray fx = frequencies(scope, width, halfWidth).reshape(1, halfWidth);
        NDArray f = fy.square().add(fx.square()).sqrt();
        // The floor keeps the DC term finite; it is the lowest non-zero frequency of the larger side, as in FMix.
        NDArray scale = f.maximum(1.0f / Math.max(height, width)).pow(-decay).expandDims(0);
        Shape shape = new Shape(count, height, halfWidth);
        NDArray re = scope.randomNormal(shape).mul(scale);
        NDArray im = scope.randomNormal(shape).mul(scale);
        NDArray spectrum = NDArrays.stack(new ai.djl.ndarray.NDList(re, im), -1).complex();
        return spectrum.ifft(height, 1).irfft(width, 2).toType(DataType.FLOAT32, false);
    }

    /** numpy's fftfreq(n) (cycles per sample), first {@code keep} entries. */
    private static NDArray frequencies(NDManager scope, int n, int keep) {
        NDArray k = scope.arange(0, keep, 1, DataType.FLOAT32);
        // Indices past the Nyquist point stand for negative frequencies k - n.
        NDArray wrapped = k.sub(k.gte((n + 1) / 2).toType(DataType.FLOAT32, false).mul(n));
        return wrapped.div(n);
    }
}
