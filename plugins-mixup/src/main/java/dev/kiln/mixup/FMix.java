package dev.kiln.mixup;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.kiln.spi.augment.Batch;
import dev.kiln.spi.augment.MixContext;
import java.lang.ref.Cleaner;
import java.util.random.RandomGenerator;

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
 * engine's global generator once per draw of masks.
 *
 * <p>In {@code batch} mode (one mask per batch) the masks are drawn ahead, a bank of up to {@link #MAX_BANK} at a
 * time (fewer for large images, see {@link #bankSize}): one Gaussian draw and one pair of inverse FFTs for the whole
 * bank instead of about fifteen small native calls per batch, which at 1x28x28 cost several copies of the batch.
 * The banks drawn from one source hold 1, 2, 4, ... masks up to that size. A refill draws from the context's source,
 * in this order, the bank's lambdas (one Beta each) and the engine seed.
 * The bank belongs to one random source and one epoch: a context with another source or epoch discards it, so an
 * epoch's batches depend only on that epoch's source, as the trainer's exact resume requires (it starts every epoch
 * with a fresh source). The bank is guarded by a lock, so one instance may be shared between threads (a thread that
 * brings another source discards the first one's bank, which costs time, not correctness).
 */
final class FMix extends MixingAugmentation {
    /** Most masks drawn at once. */
    static final int MAX_BANK = 128;
    /** Mask pixels a bank may hold (each mask is stored as +v and -v): 128 masks up to 32x32, 2 at 224x224. */
    static final long BANK_PIXELS = 1L << 17;
    /** Frees the device memory of a bank still held when its FMix is no longer reachable. */
    private static final Cleaner CLEANER = Cleaner.create();

    private final double alpha;
    private final double decayPower;
    private final Mixing.Mode mode;
    private final Mixing.Pairing pairing;
    private final int maxBank;
    /** The spectrum scale of the last image size seen; replaced when the size changes. */
    private volatile Filter filter;
    /** The current bank of batch-mode masks. */
    private final BankSlot slot = new BankSlot();

    FMix(double alpha, double decayPower, Mixing.Mode mode, Mixing.Pairing pairing, double smoothing, int stopEpoch) {
        this(alpha, decayPower, mode, pairing, smoothing, stopEpoch, MAX_BANK);
    }

    /** With at most {@code maxBank} masks per bank (tests use small banks to cross refills). */
    FMix(double alpha, double decayPower, Mixing.Mode mode, Mixing.Pairing pairing, double smoothing, int stopEpoch,
            int maxBank) {
        super("fmix", smoothing, stopEpoch, true);
        this.alpha = alpha;
        this.decayPower = decayPower;
        this.mode = mode;
        this.pairing = pairing;
        this.maxBank = maxBank;
        CLEANER.register(this, slot::close);
    }

    @Override
    Mixed mix(Batch batch, MixContext context, NDManager scope) {
        int n = batch.size();
        NDArray x = batch.inputs();
        int height = (int) x.getShape().get(2);
        int width = (int) x.getShape().get(3);
        long pixels = (long) height * width;
        long[] partner = Mixing.partners(n, pairing, context.random());
        if (mode == Mixing.Mode.BATCH) {
            double[] kept = new double[1];
            NDArray pair = slot.take(this, context, scope, x, kept);
            NDArray targets = Mixing.mixedTargets(scope, batch, smoothing, partner, Mixing.filled(n, kept[0]));
            return new Mixed(applyMask(scope, x, pair, partner), targets);
        }
        double[] lam = BetaSampler.symmetric(context.random(), alpha, n);
        long[] count = new long[n];
        for (int i = 0; i < n; i++) {
            count[i] = Math.round(lam[i] * pixels);
            lam[i] = (double) count[i] / pixels;
        }
        scope.getEngine().setRandomSeed(context.random().nextInt());
        NDArray noise = lowPassNoise(scope, n, height, width, filter(height, width));
        NDArray targets = Mixing.mixedTargets(scope, batch, smoothing, partner, lam);
        // rank[p] = position of pixel p in descending order; the top count[i] positions form the mask.
        NDArray order = noise.reshape(n, pixels).argSort(1, false);
        NDArray rank = order.argSort(1, true);
        NDArray mask = rank.lt(scope.create(count).reshape(n, 1)).reshape(n, 1, height, width);
        NDArray mixed = Mixing.select(mask, x, Mixing.gather(scope, x, partner));
        return new Mixed(mixed, targets);
    }

    /** Masks in a bank: at most {@code maxBank} and at most {@link #BANK_PIXELS} pixels, but at least one. */
    static int bankSize(long pixels, int maxBank) {
        return (int) Math.max(1, Math.min(maxBank, BANK_PIXELS / pixels));
    }

    /**
     * Applies one mask: {@code x + (x[partner] - x) * v}, where v is 1 where the partner's pixel shows and 0 where the
     * sample keeps its own, given as the pair {@code [v, -v]} of shape (2, 1, 1, H*W). For the halves pairing of an
     * even batch, x viewed as (2, N/2, C, H*W) gives {@code x[partner] - x = [B - A, A - B]}: one difference of the
     * halves, times the pair, added to x. That is three kernels of which two write the whole batch, where a select or
     * {@code x w + x' (1 - w)} needs a partner copy and three or four full passes. Pixels the sample keeps are exactly
     * its own; a pixel from the partner is {@code x + (x' - x)}, which is x' exactly when the two are within a factor
     * of two of each other (the difference is then exact) and otherwise within two units in the last place of the
     * larger of the two (finite inputs; a non-finite pixel leaks into its pair as NaN, as in any arithmetic blend).
     */
    static NDArray applyMask(NDManager scope, NDArray x, NDArray pair, long[] partner) {
        Shape shape = x.getShape();
        if (Mixing.isHalfSwap(partner)) {
            NDArray halves = x.reshape(2, shape.get(0) / 2, shape.get(1), shape.get(2) * shape.get(3));
            return halves.diff(1, 0).mul(pair).addi(halves).reshape(shape);
        }
        NDArray v = pair.get(0).reshape(1, 1, shape.get(2), shape.get(3));
        // gather always returns a new array (a flip or an index copy), so it may be changed in place.
        return Mixing.gather(scope, x, partner).subi(x).muli(v).addi(x);
    }

    /**
     * The partner masks v (M, P) of noise fields (M, P), in {@code dtype}: 0 on the {@code keep[i]} pixels of row i
     * with the largest noise (the sample's own), 1 elsewhere. Each row's threshold is its keep-th largest value, the
     * min or max of an unsorted partial top-k of the smaller side (k or P - k + 1 values); one batched comparison then
     * makes every mask. A row whose threshold value occurs more than once would keep too many pixels; such rows, found
     * from the row sums, are redone by exact ranking, so the count is always exact.
     */
    static NDArray partnerMasks(NDManager scope, NDArray noise, long[] keep, DataType dtype) {
        int rows = keep.length;
        long pixels = noise.getShape().get(1);
        NDList thresholds = new NDList(rows);
        // One native call for all the row views, instead of one get per row.
        NDList rowViews = noise.split(rows, 0);
        for (int i = 0; i < rows; i++) {
            NDArray row = rowViews.get(i);
            if (keep[i] == 0) {
                thresholds.add(scope.create(Float.POSITIVE_INFINITY));
            } else if (keep[i] == pixels) {
                thresholds.add(scope.create(Float.NEGATIVE_INFINITY));
            } else if (keep[i] <= pixels / 2) {
                thresholds.add(row.topK((int) keep[i], 1, true, false).get(0).min());
            } else {
                thresholds.add(row.topK((int) (pixels - keep[i] + 1), 1, false, false).get(0).max());
            }
        }
        NDArray threshold = NDArrays.stack(thresholds).reshape(rows, 1);
        // Counted in float32, exact up to 2^24 pixels (a float16 sum would round above 2048).
        NDArray v = noise.lt(threshold).toType(DataType.FLOAT32, false);
        float[] partnerCount = v.sum(new int[] {1}).toFloatArray();
        for (int i = 0; i < rows; i++) {
            if (partnerCount[i] != pixels - keep[i]) {
                // Ties at the threshold: rank the row (a permutation, so exactly keep[i] ranks fall below keep[i];
                // which of the tied pixels win does not matter) and keep its first keep[i] pixels.
                NDArray rank = noise.get(i).argSort(0, false).argSort(0, true);
                v.set(new NDIndex("{}", i), rank.gte(keep[i]).toType(DataType.FLOAT32, false));
            }
        }
        return dtype == DataType.FLOAT32 ? v : v.toType(dtype, false);
    }

    /** Hands out batch-mode masks one at a time from a bank, drawing a new bank when it is used up or stale. */
    private static final class BankSlot {
        private Bank bank;
        /** The source and epoch the last bank was drawn for, and how many banks were drawn for them. */
        private RandomGenerator stream;
        private int streamEpoch;
        private int fills;

        /**
         * The next mask's pair {@code [v, -v]} (2, 1, 1, H*W), a view attached to {@code scope}; its kept fraction
         * goes to {@code kept[0]}.
         */
        synchronized NDArray take(FMix owner, MixContext context, NDManager scope, NDArray x, double[] kept) {
            Shape shape = x.getShape();
            int height = (int) shape.get(2);
            int width = (int) shape.get(3);
            if (bank == null || !bank.serves(context, height, width, x.getDataType(), x.getDevice())) {
                close();
                if (stream != context.random() || streamEpoch != context.epoch()) {
                    stream = context.random();
                    streamEpoch = context.epoch();
                    fills = 0;
                }
                // Banks of one source grow 1, 2, 4, ... up to the full size: a caller that brings a new source
                // for every batch pays for one mask per batch, not for a bank it throws away.
                int size = Math.min(bankSize((long) height * width, owner.maxBank), 1 << Math.min(fills, 30));
                fills++;
                bank = owner.fill(context, scope, x, height, width, size);
            }
            Bank b = bank;
            int i = b.cursor[0]++;
            NDArray pair = b.masks.get(i);
            // Moves the view (made at fill time) into the call's scope, so it is freed with the batch's temporaries.
            pair.attach(scope);
            kept[0] = b.kept[i];
            if (b.cursor[0] == b.kept.length) {
                // The view taken above holds its own reference to the storage, so the bank can go now.
                close();
            }
            return pair;
        }

        synchronized void close() {
            if (bank != null) {
                bank.manager.close();
                bank = null;
            }
        }
    }

    /**
     * Masks drawn ahead for one random source, epoch, image size, dtype and device, as one view per mask (made by one
     * split at fill time: taking a view per batch would cost a native call); cursor[0] is the next one.
     */
    private record Bank(RandomGenerator random, int epoch, int height, int width, DataType dtype, Device device,
            NDManager manager, NDList masks, double[] kept, int[] cursor) {
        boolean serves(MixContext context, int h, int w, DataType type, Device on) {
            return random == context.random() && epoch == context.epoch() && height == h && width == w
                    && dtype == type && device.equals(on);
        }
    }

    /**
     * Draws a bank of {@code size} masks: {@code size} lambdas, then the engine seed, then the noise of all its masks at
     * once. The masks live in a manager of their own on the inputs' device, closed when the bank is used up or replaced, or when
     * its FMix is collected; the temporaries stay in the call's scope.
     */
    private Bank fill(MixContext context, NDManager scope, NDArray x, int height, int width, int size) {
        long pixels = (long) height * width;
        double[] lam = BetaSampler.symmetric(context.random(), alpha, size);
        long[] keep = new long[size];
        double[] kept = new double[size];
        for (int i = 0; i < size; i++) {
            keep[i] = Math.round(lam[i] * pixels);
            kept[i] = (double) keep[i] / pixels;
        }
        scope.getEngine().setRandomSeed(context.random().nextInt());
        NDArray noise = lowPassNoise(scope, size, height, width, filter(height, width)).reshape(size, pixels);
        NDArray v = partnerMasks(scope, noise, keep, x.getDataType());
        NDArray pairs = NDArrays.stack(new NDList(v, v.neg()), 1).reshape(2L * size, 1, 1, pixels);
        NDManager manager = scope.getEngine().newBaseManager(x.getDevice());
        pairs.attach(manager);
        NDList masks = pairs.split(size, 0);
        masks.attach(manager);
        return new Bank(context.random(), context.epoch(), height, width, x.getDataType(), x.getDevice(), manager,
                masks, kept, new int[1]);
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
