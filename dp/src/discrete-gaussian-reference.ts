// TEST-ONLY REFERENCE: a frozen copy of the all-double/bigint discrete Gaussian sampler as it was
// before the fixed-width arithmetic of uint-wide.ts (CKS20 Algorithms 1-3, with SecureRandom's
// bigint-capable Bernoulli and its uniformInt copied in as referenceBernoulli and
// referenceUniformInt; only uint32 and bit, the word stream itself, come from SecureRandom). The sequence-identity tests in
// discrete-gaussian-fast.test.ts check that DiscreteGaussianSampler returns exactly the outputs of
// this code for the same random word stream. Not exported from index.ts; do not use outside tests.
import { exactVariance, type ExactVariance } from './discrete-gaussian.js';
import type { SecureRandom } from './random.js';

const SAFE = 4503599627370496; // 2^52

/** SecureRandom.bernoulli before the fixed-width path: Bernoulli(num/den), doubles or bigint. */
export function referenceBernoulli(
  random: SecureRandom,
  num: number | bigint,
  den: number | bigint,
): boolean {
  if (typeof num === 'number' && typeof den === 'number' && den < SAFE) {
    if (num >= den) return true;
    let r = num;
    for (;;) {
      r *= 2;
      let pb = 0;
      if (r >= den) {
        pb = 1;
        r -= den;
      }
      const ub = random.bit();
      if (ub !== pb) return ub < pb;
      if (r === 0) return false;
    }
  }
  const n = BigInt(num);
  const d = BigInt(den);
  if (n >= d) return true;
  let r = n;
  for (;;) {
    r *= 2n;
    let pb = 0;
    if (r >= d) {
      pb = 1;
      r -= d;
    }
    const ub = random.bit();
    if (ub !== pb) return ub < pb;
    if (r === 0n) return false;
  }
}

/** SecureRandom.uniformInt as it was (double `%` each draw): uniform in [0, n) by rejection. */
export function referenceUniformInt(random: SecureRandom, n: number): number {
  if (n <= 4294967296) {
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = random.uint32();
      if (x < limit) return x % n;
    }
  }
  const range = SAFE;
  const limit = range - (range % n);
  for (;;) {
    const x = (random.uint32() & 0xfffff) * 4294967296 + random.uint32();
    if (x < limit) return x % n;
  }
}

/** Bernoulli(exp(−num/den)) for 0 <= num/den <= 1, as before (CKS20 Algorithm 1). */
export function referenceBernoulliExpNegLe1(
  random: SecureRandom,
  num: number | bigint,
  den: number | bigint,
): boolean {
  let k = 1;
  for (;;) {
    const d = typeof den === 'number' && den * (k + 1) < SAFE ? den * k : BigInt(den) * BigInt(k);
    if (!referenceBernoulli(random, num, d)) break;
    k++;
  }
  return k % 2 === 1;
}

function bernoulliExpNeg(random: SecureRandom, num: number | bigint, den: number | bigint): boolean {
  if (typeof num === 'number' && typeof den === 'number') {
    while (num > den) {
      if (!referenceBernoulliExpNegLe1(random, 1, 1)) return false;
      num -= den;
    }
    return referenceBernoulliExpNegLe1(random, num, den);
  }
  let n = BigInt(num);
  const d = BigInt(den);
  while (n > d) {
    if (!referenceBernoulliExpNegLe1(random, 1, 1)) return false;
    n -= d;
  }
  return referenceBernoulliExpNegLe1(random, n, d);
}

function discreteLaplace(random: SecureRandom, t: number): number {
  for (;;) {
    const u = referenceUniformInt(random, t);
    if (!referenceBernoulliExpNegLe1(random, u, t)) continue;
    let v = 0;
    while (referenceBernoulliExpNegLe1(random, 1, 1)) v++;
    const x = u + t * v;
    const negative = random.bit() === 1;
    if (negative && x === 0) continue;
    return negative ? -x : x;
  }
}

/** The pre-fixed-width DiscreteGaussianSampler, unchanged apart from the name (test-only). */
export class ReferenceDiscreteGaussianSampler {
  readonly variance: ExactVariance;
  readonly t: number;
  private readonly random: SecureRandom;

  constructor(sigma: number, random: SecureRandom) {
    this.variance = exactVariance(sigma);
    this.random = random;
    const { numerator: p, denominator: q } = this.variance;
    let f = Math.floor(Math.sqrt(p / q));
    while (f * f * q > p) f--;
    while ((f + 1) * (f + 1) * q <= p) f++;
    this.t = f + 1;
  }

  sample(): number {
    for (;;) {
      const y = discreteLaplace(this.random, this.t);
      if (this.accept(Math.abs(y))) return y;
    }
  }

  /** The acceptance test of CKS20 Algorithm 3 for a Laplace draw of magnitude `absY`. */
  accept(absY: number): boolean {
    const { numerator: p, denominator: q } = this.variance;
    const t = this.t;
    const a = absY * t * q - p;
    const den = 2 * p * q * t * t;
    return Math.abs(a) < 67108864 && den < SAFE
      ? bernoulliExpNeg(this.random, a * a, den)
      : bernoulliExpNeg(
          this.random,
          (BigInt(absY) * BigInt(t) * BigInt(q) - BigInt(p)) ** 2n,
          2n * BigInt(p) * BigInt(q) * BigInt(t) * BigInt(t),
        );
  }
}
