// Privacy loss distributions (PLDs) on a fixed grid, and the (Poisson-subsampled) Gaussian PLD.
//
// Discretization (pessimistic, so every ε and δ computed here is an upper bound up to float
// round-off and the 1e-15 tail masses, which are added to the infinity mass):
//   - A single mechanism's PLD is built with "connect the dots" (Doroshenko, Ghazi, Kamath,
//     Kumar, Manurangsi 2022, "Connect the Dots: Tighter Discrete Approximations of Privacy Loss
//     Distributions", Algorithm 1): on the grid ε_i = i·h covering the privacy loss of all but
//     e^-50 of the noise mass, the discrete PLD's hockey-stick curve δ(ε) equals the mechanism's
//     at every ε_i and lies above it between them; the mass beyond the last grid point is put at
//     +∞. dp_accounting's PLDAccountant does the same by default.
//   - Composition is convolution by FFT. Self-composition raises the Fourier transform to the
//     count-th power on a window chosen with a Chernoff bound so that at most 1e-15 of the
//     composed mass falls outside it (that mass is counted at +∞).
//   - Poisson subsampling under add-or-remove adjacency has two dominating pairs (remove: the
//     mixture against N(0,σ²); add: the reverse); each is composed on its own and ε, δ are the
//     maxima over the two (Zhu, Dong, Wang 2022, "Optimal Accounting of Differential Privacy via
//     Characteristic Function"), as dp_accounting does.
import { InvalidArgumentError } from './errors.js';
import { convolve, fft, nextPowerOfTwo } from './fft.js';
import { logAdd, logNormalSf, normalCdf, normalSf } from './special-functions.js';
import { requireDelta, requireNonNegative, requirePositive, requireProbability } from './validation.js';

/** Default grid step of the privacy loss, nats (dp_accounting's default too). */
export const DEFAULT_PLD_DISCRETIZATION = 1e-4;
/** Mass that a composition may move to +∞ when it trims the grid. */
export const DEFAULT_TAIL_MASS_TRUNCATION = 1e-15;
// Noise mass outside the grid of a single Gaussian PLD: Φc(10) ≈ 7.6e-24 < e^-50.
const GAUSSIAN_TAIL_STDS = 10;

/**
 * A privacy loss distribution on the grid {i·h}: mass `probs[k]` at loss (lowerIndex + k)·h and
 * `infinityMass` at +∞. Immutable: every operation returns a new value.
 */
export class PrivacyLossPmf {
  readonly discretization: number;
  readonly lowerIndex: number;
  readonly probs: Float64Array;
  readonly infinityMass: number;

  constructor(discretization: number, lowerIndex: number, probs: Float64Array, infinityMass: number) {
    this.discretization = discretization;
    this.lowerIndex = lowerIndex;
    this.probs = probs;
    this.infinityMass = Math.min(1, Math.max(0, infinityMass));
  }

  /** The PLD of a mechanism that reveals nothing: all mass at loss 0. */
  static identity(discretization = DEFAULT_PLD_DISCRETIZATION): PrivacyLossPmf {
    return new PrivacyLossPmf(discretization, 0, Float64Array.of(1), 0);
  }

  /**
   * The hockey-stick divergence δ(ε) = P(L = ∞) + E[(1 − e^{ε−L})₊] at ε (nats, may be negative).
   */
  deltaForEpsilon(epsilon: number): number {
    let sum = 0;
    const h = this.discretization;
    for (let k = this.probs.length - 1; k >= 0; k--) {
      const loss = (this.lowerIndex + k) * h;
      if (loss <= epsilon) break;
      sum += this.probs[k]! * -Math.expm1(epsilon - loss);
    }
    return Math.min(1, this.infinityMass + sum);
  }

  /**
   * The smallest ε >= 0 with δ(ε) <= delta (∞ when the infinity mass alone exceeds delta). δ(ε) is
   * piecewise of the form a − b·e^ε between grid points, so the crossing is solved exactly.
   */
  epsilonForDelta(delta: number): number {
    requireDelta('delta', delta);
    if (this.infinityMass > delta) return Infinity;
    const h = this.discretization;
    let mass = 0;
    // log Σ p·e^{−loss}, in log form: losses of several hundred nats would underflow e^{−loss}.
    let logMassExp = -Infinity;
    for (let k = this.probs.length - 1; k >= 0; k--) {
      const p = this.probs[k]!;
      const loss = (this.lowerIndex + k) * h;
      mass += p;
      logMassExp = logAdd(logMassExp, Math.log(p) - loss);
      const excess = this.infinityMass + mass - delta;
      if (excess <= 0) continue;
      const eps = Math.log(excess) - logMassExp;
      const prevLoss = (this.lowerIndex + k - 1) * h;
      if (k === 0 || eps >= prevLoss) return Math.max(0, eps);
    }
    return 0;
  }

  /** The PLD of running both mechanisms (convolution); up to `tailMassTruncation` goes to +∞. */
  compose(other: PrivacyLossPmf, tailMassTruncation = DEFAULT_TAIL_MASS_TRUNCATION): PrivacyLossPmf {
    checkSameGrid(this, other);
    const probs = convolve(this.probs, other.probs);
    const inf = this.infinityMass + other.infinityMass - this.infinityMass * other.infinityMass;
    return truncated(this.discretization, this.lowerIndex + other.lowerIndex, probs, inf, tailMassTruncation);
  }

  /**
   * The PLD of `count` independent runs of this mechanism, by FFT exponentiation on a window that
   * holds all but `tailMassTruncation` of the composed mass (that mass is put at +∞).
   */
  selfCompose(count: number, tailMassTruncation = DEFAULT_TAIL_MASS_TRUNCATION): PrivacyLossPmf {
    if (!(Number.isSafeInteger(count) && count >= 0)) {
      throw new InvalidArgumentError('count', `count must be an integer >= 0, got ${count}`);
    }
    if (count === 0) return PrivacyLossPmf.identity(this.discretization);
    if (count === 1) return this;
    const p = this.probs;
    const n = p.length;
    const fullMax = count * (n - 1);
    const [lo, hi] = chernoffWindow(p, count, tailMassTruncation, fullMax);
    const size = nextPowerOfTwo(hi - lo + 1);
    const re = new Float64Array(size);
    const im = new Float64Array(size);
    for (let i = 0; i < n; i++) re[i % size]! += p[i]!;
    fft(re, im);
    for (let k = 0; k < size; k++) {
      const r = Math.hypot(re[k]!, im[k]!);
      if (r === 0) continue;
      const theta = Math.atan2(im[k]!, re[k]!) * count;
      const rn = Math.pow(r, count);
      re[k] = rn * Math.cos(theta);
      im[k] = rn * Math.sin(theta);
    }
    fft(re, im, true);
    const out = new Float64Array(hi - lo + 1);
    for (let m = lo; m <= hi; m++) {
      const v = re[((m % size) + size) % size]! / size;
      out[m - lo] = v > 0 ? v : 0;
    }
    const inf = tailMassTruncation - Math.expm1(count * Math.log1p(-this.infinityMass));
    return trimZeros(this.discretization, this.lowerIndex * count + lo, out, inf);
  }
}

function checkSameGrid(a: PrivacyLossPmf, b: PrivacyLossPmf): void {
  if (a.discretization !== b.discretization) {
    throw new InvalidArgumentError(
      'discretization',
      `cannot compose PLDs on different grids (${a.discretization} and ${b.discretization})`,
    );
  }
}

function logSumExpWeighted(p: Float64Array, t: number): number {
  // log Σ p_i e^{t i}, shifted by the largest exponent to avoid overflow.
  const n = p.length;
  const shift = t > 0 ? t * (n - 1) : 0;
  let s = 0;
  for (let i = 0; i < n; i++) {
    const pi = p[i]!;
    if (pi > 0) s += pi * Math.exp(t * i - shift);
  }
  return Math.log(s) + shift;
}

/** [lo, hi] index range holding all but `tail` of the count-fold composition (Chernoff bound). */
function chernoffWindow(p: Float64Array, count: number, tail: number, fullMax: number): [number, number] {
  if (tail <= 0) return [0, fullMax];
  let lo = 0;
  let hi = fullMax;
  const logTerm = Math.log(2 / tail);
  const n = p.length;
  for (let e = -8; e <= 2; e += 0.25) {
    const t = Math.pow(10, e) / Math.max(1, Math.sqrt(count)) / Math.max(1, Math.sqrt(n));
    for (const s of [t, -t]) {
      const bound = (count * logSumExpWeighted(p, s) + logTerm) / s;
      if (!Number.isFinite(bound)) continue;
      if (s > 0) hi = Math.min(hi, Math.ceil(bound));
      else lo = Math.max(lo, Math.floor(bound));
    }
  }
  return [Math.max(0, lo), Math.max(Math.max(0, lo), hi)];
}

/** Drops up to `tail`/2 of the mass from each end (the upper part goes to +∞), then zeros. */
function truncated(
  h: number,
  lowerIndex: number,
  probs: Float64Array,
  infinityMass: number,
  tail: number,
): PrivacyLossPmf {
  let start = 0;
  let end = probs.length - 1;
  let cut = 0;
  while (start < end && cut + probs[start]! <= tail / 2) cut += probs[start++]!;
  let cutTop = 0;
  while (end > start && cutTop + probs[end]! <= tail / 2) cutTop += probs[end--]!;
  return trimZeros(h, lowerIndex + start, probs.subarray(start, end + 1), infinityMass + cutTop);
}

function trimZeros(h: number, lowerIndex: number, probs: Float64Array, infinityMass: number): PrivacyLossPmf {
  let start = 0;
  let end = probs.length - 1;
  while (start < end && probs[start] === 0) start++;
  while (end > start && probs[end] === 0) end--;
  return new PrivacyLossPmf(h, lowerIndex + start, probs.slice(start, end + 1), infinityMass);
}

/**
 * Connect-the-dots PLD from the hockey-stick curve `deltaAt` on the grid lowerIndex..upperIndex
 * (Doroshenko et al. 2022, Algorithm 1 with a fixed gap h).
 */
function connectTheDots(
  h: number,
  lowerIndex: number,
  upperIndex: number,
  deltaAt: (epsilon: number) => number,
): PrivacyLossPmf {
  const n = upperIndex - lowerIndex + 1;
  const deltas = new Float64Array(n);
  let running = 1;
  for (let k = 0; k < n; k++) {
    // δ(ε) is non-increasing; the running minimum removes round-off wiggles.
    running = Math.min(running, Math.max(0, deltaAt((lowerIndex + k) * h)));
    deltas[k] = running;
  }
  if (n === 1) return new PrivacyLossPmf(h, lowerIndex, Float64Array.of(1 - deltas[0]!), deltas[0]!);
  const em1 = Math.expm1(h);
  const eh = Math.exp(h);
  const probs = new Float64Array(n);
  probs[0] = 1 - deltas[0]! + (deltas[1]! - deltas[0]!) / em1;
  for (let k = 1; k < n - 1; k++) {
    probs[k] = (deltas[k + 1]! - deltas[k]! - eh * (deltas[k]! - deltas[k - 1]!)) / em1;
  }
  probs[n - 1] = (deltas[n - 1]! - deltas[n - 2]!) / Math.expm1(-h);
  for (let k = 0; k < n; k++) if (!(probs[k]! > 0)) probs[k] = 0;
  return trimZeros(h, lowerIndex, probs, deltas[n - 1]!);
}

/** The two dominating-pair PLDs of one subsampled Gaussian step (equal when q = 1). */
export interface PldPair {
  remove: PrivacyLossPmf;
  add: PrivacyLossPmf;
}

/**
 * PLDs of the Poisson-subsampled Gaussian mechanism (rate q, noise multiplier σ > 0, L2
 * sensitivity 1) under add-or-remove adjacency, on the grid of step `discretization` (nats,
 * default 1e-4), pessimistic connect-the-dots. With μ = (1−q)N(0,σ²) + qN(1,σ²):
 *   remove: loss log(1 − q + q·e^{(2x−1)/(2σ²)}) for x ~ μ against N(0,σ²);
 *   add:    the negated loss for x ~ N(0,σ²) against μ.
 * Throws InvalidArgumentError for q outside (0, 1] or σ <= 0.
 */
export function subsampledGaussianPld(
  samplingRate: number,
  noiseMultiplier: number,
  discretization = DEFAULT_PLD_DISCRETIZATION,
): PldPair {
  requireProbability('samplingRate', samplingRate, false);
  requirePositive('noiseMultiplier', noiseMultiplier);
  requirePositive('discretization', discretization);
  const q = samplingRate;
  const s = noiseMultiplier;
  const s2 = s * s;
  const h = discretization;
  const xLo = -GAUSSIAN_TAIL_STDS * s;
  const xHi = 1 + GAUSSIAN_TAIL_STDS * s;
  const lossRemove = (x: number): number =>
    q === 1 ? (2 * x - 1) / (2 * s2) : Math.log1p(q * Math.expm1((2 * x - 1) / (2 * s2)));
  const deltaRemove = (eps: number): number => {
    const a = Math.expm1(eps) + q; // e^ε − (1 − q)
    if (a <= 0) return -Math.expm1(eps);
    // log a without overflow for large ε: ε + log(1 − (1 − q)e^{−ε}).
    const logA = eps > 1 ? eps + Math.log1p(-(1 - q) * Math.exp(-eps)) : Math.log(a);
    const x = s2 * (logA - Math.log(q)) + 0.5;
    return q * normalSf((x - 1) / s) - Math.exp(logA + logNormalSf(x / s));
  };
  const remove = connectTheDots(
    h,
    Math.floor(lossRemove(xLo) / h),
    Math.ceil(lossRemove(xHi) / h),
    deltaRemove,
  );
  if (q === 1) return { remove, add: remove };
  const lossAddMax = -Math.log1p(-q);
  const deltaAdd = (eps: number): number => {
    if (eps >= lossAddMax) return 0;
    const b = Math.expm1(-eps) + q; // e^{−ε} − (1 − q) > 0 here
    const x = s2 * Math.log(b / q) + 0.5;
    const e = Math.exp(eps);
    return (1 - e * (1 - q)) * normalCdf(x / s) - q * e * normalCdf((x - 1) / s);
  };
  const add = connectTheDots(h, Math.floor(-lossRemove(xHi) / h), Math.ceil(lossAddMax / h), deltaAdd);
  return { remove, add };
}

/** Composes two PLD pairs direction by direction. */
export function composePldPairs(a: PldPair, b: PldPair): PldPair {
  return { remove: a.remove.compose(b.remove), add: a.add.compose(b.add) };
}

/** Self-composes a PLD pair `count` times, direction by direction. */
export function selfComposePldPair(p: PldPair, count: number): PldPair {
  const remove = p.remove.selfCompose(count);
  return { remove, add: p.add === p.remove ? remove : p.add.selfCompose(count) };
}

/** ε at δ of a pair: the larger of the two directions. */
export function pldPairEpsilon(p: PldPair, delta: number): number {
  return Math.max(p.remove.epsilonForDelta(delta), p.add.epsilonForDelta(delta));
}

/** δ at ε of a pair: the larger of the two directions. Throws for ε < 0. */
export function pldPairDelta(p: PldPair, epsilon: number): number {
  requireNonNegative('epsilon', epsilon);
  return Math.max(p.remove.deltaForEpsilon(epsilon), p.add.deltaForEpsilon(epsilon));
}
