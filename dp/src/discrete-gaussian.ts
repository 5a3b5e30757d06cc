// The exact discrete Gaussian sampler of Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian for
// Differential Privacy", Algorithms 1-3): Bernoulli(exp(−γ)) by the alternating-series trick,
// discrete Laplace by a geometric, then rejection to N_Z(0, σ²). Every probability is an exact
// rational, compared with CSPRNG bits (SecureRandom.bernoulli), so the output distribution is
// exactly the discrete Gaussian with the variance parameter below, with no floating-point
// surface (the concern of Mironov 2012). Integer arithmetic is exact at every size, in one of
// three representations that consume the same random bits and so give the same output sequence
// (discrete-gaussian-fast.test.ts checks it against a frozen copy of the all-bigint code):
// - doubles, while the acceptance test's numbers stay below 2^52 (D <= 2^44, |a| < 2^26: small σ);
// - fixed-width 144-bit integers (uint-wide.ts: three 48-bit limbs in a Float64Array, scratch
//   allocated once per sampler, so no allocation per sample) for the acceptance test
//   γ = A / D with a = |y|·t·q − p, A = a², D = 2·p·q·t². Bounds: exactVariance keeps p <= 2^52
//   and q <= 2^16, and σ < 2^20 gives t = floor(σ) + 1 <= 2^20, so D <= 2^109 and the multiples
//   D·k of Algorithm 1 fit for every k < 2^34. |a| is formed in doubles while |y|·t·q < 2^53
//   (the usual case) and squared exactly by squareNumber; beyond, in fixed width, A fits
//   whenever |y| < 2^36, which fails with probability about exp(−2^16) (|y| is discrete
//   Laplace with scale t <= 2^20);
// - bigint, only as the fallback when a number would pass 2^144 (never in practice, but exact).
import { InvalidArgumentError } from './errors.js';
import { type SecureRandom, defaultRandom } from './random.js';
import {
  type Wide,
  add,
  cmp,
  mul,
  mulSmall,
  setBigInt,
  setNumber,
  squareNumber,
  sub,
  toBigInt,
  wideZero,
} from './uint-wide.js';
import { requireCount } from './validation.js';

const SAFE = 4503599627370496; // 2^52
const TWO_POW_53 = 9007199254740992;
/** Largest D = 2·p·q·t² kept in doubles: Algorithm 1's D·k then stays below 2^52 for k < 256. */
const DOUBLE_DEN_MAX = 17592186044416; // 2^44

/** σ² as an exact fraction numerator/denominator. */
export interface ExactVariance {
  numerator: number;
  denominator: number;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** The double x as an exact fraction m / 2^e (m, e bigints, e ≥ 0). */
function exactDouble(x: number): { m: bigint; e: bigint } {
  let e = 0n;
  // Multiplying a double by 2 is exact; after at most 1074 steps x is an integer.
  while (!Number.isInteger(x)) {
    x *= 2;
    e++;
  }
  return { m: BigInt(x), e };
}

/**
 * The exact rational σ² used for a requested σ: the first continued-fraction convergent of σ² with
 * denominator <= 2^16 that is within 1e-12 relative of σ² and not below it, else σ² rounded up
 * to a multiple of 2^-16 (or of a coarser power of two when the numerator would pass 2^53).
 * Never less noise than asked: the result is ≥ the exact square of the double σ, compared in
 * exact integer arithmetic (the double product σ·σ may round down). σ = 10 gives 100/1;
 * σ = 1.1 gives 121/100 when that is not below the double 1.1's square, else the next one up.
 */
export function exactVariance(sigma: number): ExactVariance {
  if (!(Number.isFinite(sigma) && sigma > 0 && sigma * sigma < 2 ** 40)) {
    throw new InvalidArgumentError('sigma', `sigma must be a number in (0, 2^20), got ${sigma}`);
  }
  // σ² exactly: (m / 2^e)² = m² / 2^(2e).
  const { m, e } = exactDouble(sigma);
  const num2 = m * m;
  const den2 = 1n << (2n * e);
  const notBelow = (h: number, k: number): boolean => BigInt(h) * den2 >= num2 * BigInt(k);
  const v = sigma * sigma;
  let [h0, h1, k0, k1] = [0, 1, 1, 0];
  let x = v;
  for (let i = 0; i < 40; i++) {
    const a = Math.floor(x);
    [h0, h1] = [h1, a * h1 + h0];
    [k0, k1] = [k1, a * k1 + k0];
    if (k1 > 65536 || h1 > SAFE) break;
    if (Math.abs(h1 / k1 - v) <= 1e-12 * v && notBelow(h1, k1)) return { numerator: h1, denominator: k1 };
    const frac = x - a;
    if (frac < 1e-15) break;
    x = 1 / frac;
  }
  // ceil(σ² · 2^s) / 2^s with the numerator kept below 2^52 (exact in a double).
  for (let shift = 16n; ; shift--) {
    const scaled = num2 << shift;
    const ceil = (scaled + den2 - 1n) / den2;
    if (ceil < BigInt(SAFE) || shift === 0n) {
      let n = Number(ceil);
      let d = 2 ** Number(shift);
      const g = gcd(n, d);
      [n, d] = [n / g, d / g];
      return { numerator: n, denominator: d };
    }
  }
}

/** Bernoulli(exp(−num/den)) for 0 <= num/den <= 1 (CKS20 Algorithm 1). */
function bernoulliExpNegLe1(random: SecureRandom, num: number | bigint, den: number | bigint): boolean {
  let k = 1;
  for (;;) {
    const d = typeof den === 'number' && den * (k + 1) < SAFE ? den * k : BigInt(den) * BigInt(k);
    if (!random.bernoulli(num, d)) break;
    k++;
  }
  return k % 2 === 1;
}

/**
 * bernoulliExpNegLe1 for doubles (num <= den, den·k exact): the discrete Laplace's draws and the
 * small-σ acceptance test. Continues in bigint from the same k once den·k reaches 2^52.
 */
function bernoulliExpNegLe1Double(random: SecureRandom, num: number, den: number): boolean {
  let k = 1;
  for (;;) {
    const d = den * k;
    if (d >= SAFE) {
      while (random.bernoulli(BigInt(num), BigInt(den) * BigInt(k))) k++;
      break;
    }
    if (!random.bernoulliDouble(num, d)) break;
    k++;
  }
  return k % 2 === 1;
}

/**
 * bernoulliExpNegLe1 on fixed-width integers: num <= den < 2^144; `dk` is scratch for den·k, built
 * by repeated addition. Continues in bigint from the same k if den·k would pass 2^144.
 * Exported for tests only.
 */
export function bernoulliExpNegLe1Wide(random: SecureRandom, num: Wide, den: Wide, dk: Wide): boolean {
  let k = 1;
  dk.set(den);
  for (;;) {
    if (!random.bernoulliWide(num, dk)) break;
    k++;
    if (!add(dk, dk, den)) {
      const n = toBigInt(num);
      const d = toBigInt(den);
      while (random.bernoulli(n, d * BigInt(k))) k++;
      break;
    }
  }
  return k % 2 === 1;
}

/** Bernoulli(exp(−num/den)) for any num/den >= 0 (CKS20 Algorithm 1, γ > 1 by splitting). */
function bernoulliExpNeg(random: SecureRandom, num: number | bigint, den: number | bigint): boolean {
  if (typeof num === 'number' && typeof den === 'number') {
    while (num > den) {
      if (!bernoulliExpNegLe1Double(random, 1, 1)) return false;
      num -= den;
    }
    return bernoulliExpNegLe1Double(random, num, den);
  }
  let n = BigInt(num);
  const d = BigInt(den);
  while (n > d) {
    if (!bernoulliExpNegLe1(random, 1, 1)) return false;
    n -= d;
  }
  return bernoulliExpNegLe1(random, n, d);
}

/** bernoulliExpNeg on fixed-width integers; `num` is consumed (overwritten), `dk` is scratch. */
function bernoulliExpNegWide(random: SecureRandom, num: Wide, den: Wide, dk: Wide): boolean {
  while (cmp(num, den) > 0) {
    if (!bernoulliExpNegLe1Double(random, 1, 1)) return false;
    sub(num, num, den);
  }
  return bernoulliExpNegLe1Wide(random, num, den, dk);
}

/** Discrete Laplace with scale t (integer >= 1): P(x) ∝ exp(−|x|/t) (CKS20 Algorithm 2). */
function discreteLaplace(random: SecureRandom, t: number): number {
  for (;;) {
    const u = random.uniformInt(t);
    if (!bernoulliExpNegLe1Double(random, u, t)) continue;
    let v = 0;
    while (bernoulliExpNegLe1Double(random, 1, 1)) v++;
    const x = u + t * v;
    const negative = random.bit() === 1;
    if (negative && x === 0) continue;
    return negative ? -x : x;
  }
}

/**
 * Sampler of the discrete Gaussian N_Z(0, σ²): P(x) ∝ exp(−x²/(2σ²)) on the integers, with σ² the
 * exact rational `variance` (see exactVariance). Note that σ² is the variance *parameter*; the
 * actual variance is slightly below it for small σ (CKS20 Proposition 19), which only helps the
 * noise stay within the accounted bound.
 */
export class DiscreteGaussianSampler {
  readonly sigma: number;
  readonly variance: ExactVariance;
  private readonly t: number;
  private readonly random: SecureRandom;
  /** D = 2·p·q·t² as a double when at most DOUBLE_DEN_MAX, else 0 (fixed-width path). */
  private readonly doubleDen: number;
  /** Whether t, q and D fit the fixed-width path (always, within the constructor's limits). */
  private readonly wideOk: boolean;
  private readonly wideP: Wide = wideZero();
  private readonly wideD: Wide = wideZero();
  // Scratch for the acceptance test, reused by every sample.
  private readonly wideA: Wide = wideZero();
  private readonly wideX: Wide = wideZero();
  private readonly wideDk: Wide = wideZero();

  /**
   * `sigma` > 0 (integer units); `random` defaults to the process-wide CSPRNG. Throws
   * InvalidArgumentError for σ outside (0, 2^20).
   */
  constructor(sigma: number, random: SecureRandom = defaultRandom()) {
    this.sigma = sigma;
    this.variance = exactVariance(sigma);
    this.random = random;
    const { numerator: p, denominator: q } = this.variance;
    // t = floor(σ) + 1, computed exactly: the largest integer f with f² q <= p, plus one.
    let f = Math.floor(Math.sqrt(p / q));
    while (f * f * q > p) f--;
    while ((f + 1) * (f + 1) * q <= p) f++;
    const t = f + 1;
    this.t = t;
    const den = 2n * BigInt(p) * BigInt(q) * BigInt(t) * BigInt(t);
    this.doubleDen = den <= BigInt(DOUBLE_DEN_MAX) ? Number(den) : 0;
    // mulSmall takes factors up to 2^28; t <= 2^20 and q <= 2^16 here.
    this.wideOk = setBigInt(this.wideD, den) && setNumber(this.wideP, p) && t <= 2 ** 28 && q <= 2 ** 28;
  }

  /** One sample (CKS20 Algorithm 3). */
  sample(): number {
    for (;;) {
      const y = this.discreteLaplace();
      if (this.accept(Math.abs(y))) return y;
    }
  }

  /**
   * Algorithm 3's acceptance test for a discrete Laplace draw of magnitude `absY`: Bernoulli(exp(−γ))
   * with γ = (|y| − σ²/t)² / (2σ²) = (|y|·t·q − p)² / (2·p·q·t²). Public for the tests only.
   */
  accept(absY: number): boolean {
    const { numerator: p, denominator: q } = this.variance;
    const t = this.t;
    if (this.doubleDen !== 0) {
      // A product that rounds (past 2^53) leaves a >= 2^53 − p >= 2^52, so the guard stays exact.
      const a = absY * t * q - p;
      if (Math.abs(a) < 67108864) return bernoulliExpNeg(this.random, a * a, this.doubleDen);
    }
    if (this.wideOk) {
      // |y|·t·q is exact when below 2^53 (every partial product is smaller), and so is |a|.
      const m = absY * t * q;
      if (m < TWO_POW_53) {
        squareNumber(this.wideA, m >= p ? m - p : p - m);
        return bernoulliExpNegWide(this.random, this.wideA, this.wideD, this.wideDk);
      }
    }
    const x = this.wideX;
    if (this.wideOk && setNumber(x, absY) && mulSmall(x, x, t) && mulSmall(x, x, q)) {
      if (cmp(x, this.wideP) >= 0) sub(x, x, this.wideP);
      else sub(x, this.wideP, x);
      if (mul(this.wideA, x, x)) return bernoulliExpNegWide(this.random, this.wideA, this.wideD, this.wideDk);
    }
    return bernoulliExpNeg(
      this.random,
      (BigInt(absY) * BigInt(t) * BigInt(q) - BigInt(p)) ** 2n,
      2n * BigInt(p) * BigInt(q) * BigInt(t) * BigInt(t),
    );
  }

  private discreteLaplace(): number {
    return discreteLaplace(this.random, this.t);
  }

  /** Fills `out` with independent samples and returns it. */
  fill<T extends Float64Array | Int32Array>(out: T): T {
    for (let i = 0; i < out.length; i++) out[i] = this.sample();
    return out;
  }

  /** `count` independent samples as a Float64Array (integers, exact up to 2^53). */
  sampleBatch(count: number): Float64Array {
    requireCount('count', count, 0);
    return this.fill(new Float64Array(count));
  }
}

/**
 * `count` samples of N_Z(0, σ²) (σ in integer units) from the CSPRNG, as a Float64Array of
 * integers. Throws InvalidArgumentError for σ outside (0, 2^20) or a negative count.
 */
export function sampleDiscreteGaussian(count: number, sigma: number, random?: SecureRandom): Float64Array {
  return new DiscreteGaussianSampler(sigma, random).sampleBatch(count);
}
