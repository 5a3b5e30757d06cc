// The worker's integer noise share. Rule (worker-ts/README.md, "noise shares"): with noise
// multiplier σ, sensitivity Δ (the clip norm C inflated by randomized rounding, in gradient
// units) and quorum t, each worker adds noise of variance σ²Δ²/t per coordinate, in integer
// units (× scale²). Any s ≥ t contributors then carry variance s·σ²Δ²/t ≥ σ²Δ², and the
// accountant records the realised multiplier σ·√(s/t) of the survivors.
//
// The sampler is @tensorguard/dp's exact discrete Gaussian N_Z(0, std²) (Canonne, Kamath, Steinke
// 2020) driven by node:crypto bits: every probability is an exact rational, so there is no
// floating-point surface (Mironov 2012). Its variance parameter is std² rounded up (never less
// noise than asked for). tfjs and Math.random are never used for noise.
import { DiscreteGaussianSampler } from '@tensorguard/dp';

/** The largest share std the exact sampler accepts (dp's DiscreteGaussianSampler: σ < 2^20). */
export const MAX_SHARE_STD = 2 ** 20;

/** Standard deviation, in integer units, of one worker's share. */
export function shareStdInteger(
  noiseMultiplier: number,
  sensitivity: number,
  scale: number,
  quorum: number,
): number {
  if (!(quorum >= 1)) throw new RangeError(`quorum must be ≥ 1, got ${quorum}`);
  return (noiseMultiplier * sensitivity * scale) / Math.sqrt(quorum);
}

/**
 * d integers, i.i.d. N_Z(0, std²) (exact discrete Gaussian, CSPRNG). std = 0 gives zeros. Throws
 * RangeError for std outside [0, 2^20): the coordinator refuses such a job before it starts.
 */
export function integerNoiseShare(d: number, std: number): Float64Array {
  if (std === 0) return new Float64Array(d);
  if (!(std > 0 && std < MAX_SHARE_STD))
    throw new RangeError(`noise share std ${std} integer units is outside (0, 2^20)`);
  return new DiscreteGaussianSampler(std).sampleBatch(d);
}

/** Samples drawn per event-loop turn while prefetching (~1 ms at large σ). */
const PREFETCH_CHUNK = 2048;

/**
 * The worker's noise shares, one per round, with the next round's share drawn ahead of time: after
 * a share is taken, `prefetch` fills a fresh buffer for the same (d, std) in chunks of 2048 samples,
 * one chunk per event-loop turn, while the worker uploads and waits for the aggregate (gRPC
 * messages are served between chunks). `take` hands out that buffer, finishing it first if the
 * round came early, or draws a fresh share when (d, std) changed. The samples are the same exact
 * discrete Gaussian from the same CSPRNG, drawn earlier; every buffer is handed out once, and a
 * prefetched buffer that does not match the round is zeroed and dropped, never used.
 */
export class NoiseShares {
  private next: {
    d: number;
    std: number;
    out: Float64Array;
    filled: number;
    sampler: DiscreteGaussianSampler;
  } | null = null;
  private timer: NodeJS.Immediate | null = null;
  /** Shares handed out from a prefetch, and drawn at take time: for the worker's diagnostics. */
  readonly counts = { prefetched: 0, drawn: 0, discarded: 0 };

  /** Samples of the next share drawn so far (0 when none is being prefetched). */
  get prefetchedSamples(): number {
    return this.next?.filled ?? 0;
  }

  /** d integers, i.i.d. N_Z(0, std²), as `integerNoiseShare`; throws the same RangeError. */
  take(d: number, std: number): Float64Array {
    const p = this.next;
    this.stop();
    this.next = null;
    if (p && p.d === d && p.std === std) {
      if (p.filled < d) p.sampler.fill(p.out.subarray(p.filled));
      this.counts.prefetched++;
      return p.out;
    }
    if (p) {
      p.out.fill(0);
      this.counts.discarded++;
    }
    this.counts.drawn++;
    return integerNoiseShare(d, std);
  }

  /** Starts drawing the next share for (d, std) in the background; replaces any earlier prefetch. */
  prefetch(d: number, std: number): void {
    if (this.next) {
      this.next.out.fill(0);
      this.stop();
      this.next = null;
    }
    if (std === 0 || !(std > 0 && std < MAX_SHARE_STD)) return; // take() answers these at once
    this.next = { d, std, out: new Float64Array(d), filled: 0, sampler: new DiscreteGaussianSampler(std) };
    this.schedule();
  }

  /** Stops prefetching and zeroes what was drawn. */
  dispose(): void {
    this.next?.out.fill(0);
    this.stop();
    this.next = null;
  }

  private schedule(): void {
    this.timer = setImmediate(() => {
      this.timer = null;
      const p = this.next;
      if (!p || p.filled >= p.d) return;
      const end = Math.min(p.d, p.filled + PREFETCH_CHUNK);
      p.sampler.fill(p.out.subarray(p.filled, end));
      p.filled = end;
      if (end < p.d) this.schedule();
    });
  }

  private stop(): void {
    if (this.timer) clearImmediate(this.timer);
    this.timer = null;
  }
}
