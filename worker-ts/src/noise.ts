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
