// The worker's integer noise share. Rule (worker-ts/README.md, "noise shares"): with noise
// multiplier σ, sensitivity Δ (the clip norm C inflated by randomized rounding, in gradient
// units) and quorum t, each worker adds noise of variance σ²Δ²/t per coordinate, in integer
// units (× scale²). Any s ≥ t contributors then carry variance s·σ²Δ²/t ≥ σ²Δ², and the
// accountant records the realised multiplier σ·√(s/t) of the survivors.
//
// The sampler is a rounded Gaussian whose uniforms come from node:crypto (53-bit uniforms,
// Box-Muller). Rounding to integers only adds variance (≤ 1/12 per coordinate in integer units,
// negligible at scale 2^16), never removes it, and tfjs / Math.random are never used for noise.
import { randomFillSync } from 'node:crypto';

const BATCH = 8192;

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

/** d integers, each round(N(0, std²)), from the system CSPRNG. */
export function gaussianIntegerNoise(d: number, std: number): Float64Array {
  const out = new Float64Array(d);
  if (std === 0) return out;
  const words = new Uint32Array(BATCH);
  let w = BATCH;
  const uniform = () => {
    if (w + 2 > BATCH) {
      randomFillSync(words);
      w = 0;
    }
    // 53-bit uniform in (0, 1]: 27 + 26 bits.
    const hi = words[w++]! >>> 5;
    const lo = words[w++]! >>> 6;
    return (hi * 67108864 + lo + 1) / 9007199254740992;
  };
  for (let i = 0; i < d; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())) * std;
    const theta = 2 * Math.PI * uniform();
    out[i] = Math.round(r * Math.cos(theta));
    if (i + 1 < d) out[i + 1] = Math.round(r * Math.sin(theta));
  }
  return out;
}
