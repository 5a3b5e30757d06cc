// Continuous Gaussian noise from the CSPRNG, in batches.
//
// Floating-point attacks (Mironov 2012, "On Significance of the Least Significant Bits for
// Differential Privacy"): a textbook sampler's float output has a value-dependent pattern of
// reachable doubles, so an observer of x + noise can sometimes tell x. Following Opacus' secure
// mode (after Holohan & Braghin 2021, "Secure Random Sampling in Differential Privacy"), each
// output is the sum of two independent Box–Muller draws scaled by 1/√2 (same distribution,
// N(0, σ²), but without the exploitable lattice of a single transform), built from 53-bit
// CSPRNG uniforms. Where the values are aggregated as integers (secure aggregation), use the
// exact discrete Gaussian instead: it has no floating-point surface at all.
import { type SecureRandom, defaultRandom } from './random.js';
import { requireCount, requireNonNegative } from './validation.js';

const TWO_PI = 2 * Math.PI;

/** Options of `sampleGaussian`. */
export interface GaussianSampleOptions {
  /** Randomness source; default the process-wide CSPRNG. */
  random?: SecureRandom;
  /** Sum two draws per output (the floating-point defence, default true); false halves the cost. */
  secure?: boolean;
}

function fillStandard(out: Float64Array, random: SecureRandom): void {
  const n = out.length;
  let i = 0;
  while (i < n) {
    // Box–Muller on u1 in (0, 1]: log never sees 0.
    const u1 = 1 - random.uniform();
    const u2 = random.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    const a = TWO_PI * u2;
    out[i++] = r * Math.cos(a);
    if (i < n) out[i++] = r * Math.sin(a);
  }
}

/**
 * `count` independent N(0, σ²) samples (σ = `stddev` >= 0, default 1), as a Float64Array, from the
 * CSPRNG. Throws InvalidArgumentError for a negative count or σ.
 */
export function sampleGaussian(count: number, stddev = 1, options: GaussianSampleOptions = {}): Float64Array {
  requireCount('count', count, 0);
  requireNonNegative('stddev', stddev);
  const random = options.random ?? defaultRandom();
  const out = new Float64Array(count);
  fillStandard(out, random);
  if (options.secure ?? true) {
    const second = new Float64Array(count);
    fillStandard(second, random);
    const scale = stddev * Math.SQRT1_2;
    for (let i = 0; i < count; i++) out[i] = (out[i]! + second[i]!) * scale;
  } else {
    for (let i = 0; i < count; i++) out[i]! *= stddev;
  }
  return out;
}
