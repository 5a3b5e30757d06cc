// Pure Rényi-DP math: the RDP curves of the mechanisms TensorGuard uses, and the conversions from
// an RDP curve to (ε, δ). No state; the accountant composes these.
//
// The subsampled-Gaussian formulas follow Google's dp_accounting (rdp_privacy_accountant.py,
// v0.6.0) closely enough to agree to ~1e-12 relative, because the design requires agreement to
// 1e-6 (see dp/test-vectors/ and reference.test.ts):
//   - integer orders: the exact binomial expansion of Mironov, Talwar, Zhang 2019, "Rényi
//     Differential Privacy of the Sampled Gaussian Mechanism", Section 3.3;
//   - fractional orders: the two-sided series of the same paper, Section 3.3, summed with the
//     ABSOLUTE values of the generalized binomial coefficients (log|Γ|, as scipy's gammaln gives).
//     For fractional α those coefficients alternate in sign for i > α, so the sum is an upper
//     bound on A_α, not its exact value: pessimistic, as dp_accounting is. The series is cut
//     after 1000 terms; an order that has not converged by then gets RDP = ∞ (excluded), as in
//     dp_accounting.
//   - sampling without replacement: Wang, Balle, Kasiviswanathan 2019, "Subsampled Rényi
//     Differential Privacy and Analytical Moments Accountant", Theorem 27 (exact for α <= 256,
//     Stirling-type bound above), Corollary 10 interpolation for fractional orders.
import { InvalidArgumentError } from './errors.js';
import { logAdd, logBinomial, logErfc } from './special-functions.js';
import { requireDelta, requireNonNegative, requireProbability } from './validation.js';

/**
 * dp_accounting's default orders: 1.1, 1.2, ..., 10.9, then 11..63, then 128, 256, 512, 1024
 * (156 orders). Good coverage for the Gaussian mechanism at ε between ~0.1 and ~50.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 53 }, (_, i) => 11 + i),
  128,
  256,
  512,
  1024,
]);

/**
 * The integer orders of DEFAULT_RDP_ORDERS (2..63, 128, 256, 512, 1024). The integer mechanism's
 * rigorous RDP bound equals the Gaussian's there (rdpPoissonSubsampledSymmetric), so a σ
 * calibrated on these orders keeps the integer mechanism's ε within the target.
 */
export const INTEGER_RDP_ORDERS: readonly number[] = Object.freeze(
  DEFAULT_RDP_ORDERS.filter((a) => Number.isInteger(a)),
);

/** How an RDP curve is turned into (ε, δ). */
export type RdpConversion = 'improved' | 'classic';

function checkOrders(orders: readonly number[]): void {
  if (orders.length === 0) throw new InvalidArgumentError('orders', 'orders must not be empty');
  for (const a of orders) {
    if (!(a > 1)) {
      throw new InvalidArgumentError('orders', `every RDP order must be > 1, got ${a}`);
    }
  }
}

/**
 * RDP of the Gaussian mechanism with noise multiplier σ (std / L2 sensitivity): α / (2σ²) at each
 * order. σ = 0 gives ∞. Throws InvalidArgumentError for σ < 0 or an order <= 1.
 */
export function rdpGaussian(noiseMultiplier: number, orders: readonly number[]): number[] {
  requireNonNegative('noiseMultiplier', noiseMultiplier);
  checkOrders(orders);
  if (noiseMultiplier === 0) return orders.map(() => Infinity);
  return orders.map((a) => a / (2 * noiseMultiplier * noiseMultiplier));
}

function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const twoVar = 2 * sigma * sigma;
  for (let i = 0; i <= alpha; i++) {
    const coef = logBinomial(alpha, i) + i * logQ + (alpha - i) * log1mQ;
    logA = logAdd(logA, coef + (i * i - i) / twoVar);
  }
  return logA;
}

const MAX_STEPS_LOG_A_FRAC = 1000;

function logAFrac(q: number, sigma: number, alpha: number): number {
  // Split the integral defining A_α at z0, where the two Gaussians' densities cross after
  // weighting; each side is a convergent series (Mironov, Talwar, Zhang 2019, Section 3.3).
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const twoVar = 2 * sigma * sigma;
  const erfcScale = Math.SQRT2 * sigma;
  const logHalf = Math.log(0.5);
  let lastS0 = -Infinity;
  let lastS1 = -Infinity;
  for (let i = 0; i < MAX_STEPS_LOG_A_FRAC; i++) {
    const logCoef = logBinomial(alpha, i);
    const j = alpha - i;
    const logT0 = logCoef + i * logQ + j * log1mQ;
    const logT1 = logCoef + j * logQ + i * log1mQ;
    const logE0 = logHalf + logErfc((i - z0) / erfcScale);
    const logE1 = logHalf + logErfc((z0 - j) / erfcScale);
    const logS0 = logT0 + (i * i - i) / twoVar + logE0;
    const logS1 = logT1 + (j * j - j) / twoVar + logE1;
    logA0 = logAdd(logA0, logS0);
    logA1 = logAdd(logA1, logS1);
    const total = logAdd(logA0, logA1);
    if (logS0 < lastS0 && logS1 < lastS1 && Math.max(logS0, logS1) < total - 30) return total;
    lastS0 = logS0;
    lastS1 = logS1;
  }
  return Infinity;
}

/**
 * RDP of the Poisson-subsampled Gaussian mechanism (each record included independently with
 * probability q; noise multiplier σ), under add-or-remove-one adjacency, at each order.
 * Integer orders are exact; fractional orders are the absolute-value series upper bound described
 * at the top of this file. q = 0 gives 0; σ = 0 (with q > 0) gives ∞; q = 1 gives α/(2σ²).
 * Throws InvalidArgumentError for q outside [0, 1], σ < 0, or an order <= 1.
 */
export function rdpPoissonSubsampledGaussian(
  samplingRate: number,
  noiseMultiplier: number,
  orders: readonly number[],
): number[] {
  requireProbability('samplingRate', samplingRate);
  requireNonNegative('noiseMultiplier', noiseMultiplier);
  checkOrders(orders);
  const q = samplingRate;
  const sigma = noiseMultiplier;
  return orders.map((alpha) => {
    if (q === 0) return 0;
    if (!Number.isFinite(alpha) || sigma === 0) return Infinity;
    if (q === 1) return alpha / (2 * sigma * sigma);
    const logA = Number.isInteger(alpha) ? logAInt(q, sigma, alpha) : logAFrac(q, sigma, alpha);
    return logA / (alpha - 1);
  });
}

/**
 * log|Δ^k f(0)| for k = 0..n+1 of the sequence (1, e^{cgf(0)}, e^{cgf(1)}, ...), kept in
 * sign-magnitude log form (Wang, Balle, Kasiviswanathan 2019, Theorem 27 needs these forward
 * differences of exp(cgf) and they overflow doubles for large α).
 */
function forwardDiffs(cgf: (x: number) => number, n: number): Float64Array {
  const vec = new Float64Array(n + 3);
  const signs = new Uint8Array(n + 3).fill(1);
  const deltas = new Float64Array(n + 2);
  for (let i = 1; i < n + 3; i++) vec[i] = cgf(i - 1);
  for (let i = 0; i < n + 2; i++) {
    const m = n + 2 - i;
    for (let j = 0; j < m; j++) {
      const a = vec[j]!;
      const b = vec[j + 1]!;
      if (signs[j] === signs[j + 1]) {
        // log|e^b − e^a| with the sign of (b − a), flipped when both are negative.
        let positive: boolean;
        let mag: number;
        if (b > a) {
          positive = true;
          mag = b + Math.log1p(-Math.exp(a - b));
        } else if (b < a) {
          positive = false;
          mag = a + Math.log1p(-Math.exp(b - a));
        } else {
          positive = true;
          mag = -Infinity;
        }
        if (!signs[j + 1]) positive = !positive;
        signs[j] = positive ? 1 : 0;
        vec[j] = mag;
      } else {
        vec[j] = logAdd(a, b);
        signs[j] = signs[j + 1]!;
      }
    }
    deltas[i] = vec[0]!;
  }
  return deltas;
}

const WOR_MAX_EXACT_ALPHA = 256;

function logAWorInt(q: number, sigma: number, alpha: number): number {
  if (alpha === 1) return 0;
  const twoVar = 2 * sigma * sigma;
  const cgf = (x: number): number => (x * (x + 1)) / twoVar;
  const func = (x: number): number => x / twoVar;
  const logQ = Math.log(q);
  let logA = 0;
  const logF2m1 = func(2) + Math.log1p(-Math.exp(-func(2)));
  const first = 2 * logQ + logBinomial(alpha, 2) + Math.min(Math.log(4) + logF2m1, func(2) + Math.log(2));
  if (alpha <= WOR_MAX_EXACT_ALPHA) {
    const deltas = forwardDiffs(cgf, alpha);
    for (let i = 2; i <= alpha; i++) {
      let s: number;
      if (i === 2) s = first;
      else {
        const lo = deltas[2 * Math.floor(i / 2) - 1]!;
        const hi = deltas[2 * Math.ceil(i / 2) - 1]!;
        s = Math.min(Math.log(4) + 0.5 * (lo + hi), Math.log(2) + cgf(i - 1));
        s += i * logQ + logBinomial(alpha, i);
      }
      logA = logAdd(logA, s);
    }
    return logA;
  }
  for (let i = 2; i <= alpha; i++) {
    const s = i === 2 ? first : Math.log(2) + cgf(i - 1) + i * logQ + logBinomial(alpha, i);
    logA = logAdd(logA, s);
  }
  return logA;
}

/**
 * RDP of the Gaussian mechanism on a uniformly random subset of fixed size m drawn without
 * replacement from n records (q = m/n), under replace-one adjacency (n is public), at each order
 * (Wang, Balle, Kasiviswanathan 2019, Theorem 27; fractional orders by their Corollary 10
 * interpolation of the cumulant generating function, an upper bound). q = 0 gives 0, q = 1
 * gives α/(2σ²), σ = 0 gives ∞. Throws InvalidArgumentError for q outside [0, 1], σ < 0 or an
 * order <= 1.
 */
export function rdpSampledWithoutReplacementGaussian(
  samplingRate: number,
  noiseMultiplier: number,
  orders: readonly number[],
): number[] {
  requireProbability('samplingRate', samplingRate);
  requireNonNegative('noiseMultiplier', noiseMultiplier);
  checkOrders(orders);
  const q = samplingRate;
  const sigma = noiseMultiplier;
  return orders.map((alpha) => {
    if (q === 0) return 0;
    if (sigma === 0) return Infinity;
    if (q === 1) return alpha / (2 * sigma * sigma);
    if (!Number.isFinite(alpha)) return Infinity;
    if (Number.isInteger(alpha)) return logAWorInt(q, sigma, alpha) / (alpha - 1);
    const lo = Math.floor(alpha);
    const hi = Math.ceil(alpha);
    const t = alpha - lo;
    const x = logAWorInt(q, sigma, lo);
    const y = logAWorInt(q, sigma, hi);
    return ((1 - t) * x + t * y) / (alpha - 1);
  });
}

/**
 * Generic RDP amplification by Poisson subsampling for a mechanism whose RDP at integer order l
 * is `rdpAt(l)` (Zhu & Wang 2019, "Poisson Subsampled Rényi Differential Privacy", Theorem 6,
 * the general upper bound with the factor 3 on terms l >= 3). Valid at integer orders α >= 2 for
 * any mechanism; returns min(bound, rdpAt(α)) since subsampling never hurts. Used for the
 * discrete (distributed discrete Gaussian, Skellam) mechanisms, whose privacy loss is not exactly
 * Gaussian.
 */
export function rdpPoissonSubsampledGeneric(
  samplingRate: number,
  rdpAt: (order: number) => number,
  order: number,
): number {
  requireProbability('samplingRate', samplingRate);
  if (!(Number.isInteger(order) && order >= 2)) {
    throw new InvalidArgumentError('order', `the generic bound needs an integer order >= 2, got ${order}`);
  }
  const q = samplingRate;
  if (q === 0) return 0;
  const plain = rdpAt(order);
  if (q === 1) return plain;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const a = order;
  // (1-q)^{α-1} (αq - q + 1)
  let sum = (a - 1) * log1mQ + Math.log(a * q - q + 1);
  sum = logAdd(sum, logBinomial(a, 2) + 2 * logQ + (a - 2) * log1mQ + rdpAt(2));
  const log3 = Math.log(3);
  for (let l = 3; l <= a; l++) {
    sum = logAdd(sum, log3 + (l - 1) * rdpAt(l) + logBinomial(a, l) + (a - l) * log1mQ + l * logQ);
  }
  return Math.min(sum / (a - 1), plain);
}

/**
 * Tight RDP amplification by Poisson subsampling for a mechanism whose neighbouring outputs form
 * a *symmetric shift pair* — the noise Z is symmetric (Z ~ −Z) and neighbouring releases are Z + a
 * and Z + b (or mixtures of such pairs over randomness both share, e.g. coupled rounding) — with
 * RDP `rdpAt(l)` of the pair at integer orders l. With n = ⌊α⌋ and m = α if α is an integer,
 * else n + 1:
 *
 *   ε(α) = 1/(α−1) · log[ (1−q)^α + α(1−q)^{α−1}q + Σ_{l=2..m} C(α,l) (1−q)^{α−l} q^l e^{(l−1)·rdpAt(l)} ].
 *
 * Why this is a bound in both directions (docs/privacy.md, "A rigorous ε for the integers"):
 * remove — D_α((1−q)μ0 + qμ1 ‖ μ0) = log E_μ0[(1−q+qL)^α]/(α−1), L = μ1/μ0; at an integer α the
 * binomial expansion gives exactly these terms, each with E_μ0[L^l] = e^{(l−1) D_l(μ1‖μ0)} <=
 * e^{(l−1) rdpAt(l)} (Mironov, Talwar, Zhang 2019, §3); at a fractional α, Taylor's theorem with
 * Lagrange remainder gives (1+y)^α <= Σ_{l<=n+1} C(α,l) y^l for y >= 0 (the remainder
 * C(α,n+1) y^{n+1} (1+ξ)^{α−n−1} has a positive coefficient and (1+ξ)^{α−n−1} <= 1), every
 * coefficient positive, so the same moments bound it; add — for a symmetric pair
 * D_α(μ0 ‖ (1−q)μ0 + qμ1) <= the remove direction at every real α >= 1 (pair each outcome with
 * its mirror image: the claim reduces to two-point pairs, where it follows from a·b >= ℓ for
 * a = 1−q+qℓ, b = (1−q)ℓ+q, ℓ >= 1; proof in docs/privacy.md). Mixtures over shared randomness
 * keep both bounds (joint convexity of E_Q[(P/Q)^α]). At integer orders this is Zhu & Wang 2019's
 * bound without the factor 3 of their general case, and for the Gaussian the exact subsampled RDP;
 * at fractional orders it is within a fraction of a percent of the Gaussian's exact value at the
 * settings of docs/privacy.md. Returns min(bound, rdpAt(α)) for integer α (subsampling never
 * hurts). Throws InvalidArgumentError for an order <= 1.
 */
export function rdpPoissonSubsampledSymmetric(
  samplingRate: number,
  rdpAt: (order: number) => number,
  order: number,
): number {
  requireProbability('samplingRate', samplingRate);
  if (!(order > 1 && Number.isFinite(order))) {
    throw new InvalidArgumentError('order', `the symmetric bound needs an order > 1, got ${order}`);
  }
  const q = samplingRate;
  if (q === 0) return 0;
  const a = order;
  const integer = Number.isInteger(a);
  const top = integer ? a : Math.floor(a) + 1;
  if (q === 1) return integer ? rdpAt(a) : chordOfIntegerOrders(rdpAt, a);
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  // (1−q)^α + α q (1−q)^{α−1} = (1−q)^{α−1}(1 + (α−1)q)
  let sum = (a - 1) * log1mQ + Math.log1p((a - 1) * q);
  for (let l = 2; l <= top; l++) {
    sum = logAdd(sum, (l - 1) * rdpAt(l) + logBinomial(a, l) + (a - l) * log1mQ + l * logQ);
  }
  return integer ? Math.min(sum / (a - 1), rdpAt(a)) : sum / (a - 1);
}

/**
 * The chord bound at a fractional order α > 1 from values `f` at integer orders: (α−1)·D_α is a
 * log-moment-generating function, convex in α, so between ⌊α⌋ and ⌈α⌉ it lies below the chord
 * through the values at both ends; below 2 the value at 2 (Rényi divergence grows with the order).
 */
function chordOfIntegerOrders(f: (order: number) => number, alpha: number): number {
  const lo = Math.floor(alpha);
  const hi = Math.max(2, Math.ceil(alpha));
  if (lo === hi || lo < 2) return f(hi);
  const t = alpha - lo;
  return ((1 - t) * (lo - 1) * f(lo) + t * (hi - 1) * f(hi)) / (alpha - 1);
}

/**
 * RDP curve at `orders` of a Poisson-subsampled symmetric shift pair (rdpPoissonSubsampledSymmetric)
 * whose unsampled RDP is `rdpAt` at integer orders: at an integer order the tight bound; at a
 * fractional order the smaller of the Taylor bound and the chord between the neighbouring integer
 * orders (both upper bounds). rdpAt is called at integer orders only; +∞ there gives +∞ (0 when
 * q = 0). Throws InvalidArgumentError for an order <= 1.
 */
export function rdpPoissonSubsampledSymmetricCurve(
  samplingRate: number,
  rdpAt: (order: number) => number,
  orders: readonly number[],
): number[] {
  checkOrders(orders);
  const cache = new Map<number, number>();
  const at = (l: number): number => {
    let v = cache.get(l);
    if (v === undefined) {
      v = rdpAt(l);
      cache.set(l, v);
    }
    return v;
  };
  const intCache = new Map<number, number>();
  const sub = (l: number): number => {
    let v = intCache.get(l);
    if (v === undefined) {
      v = rdpPoissonSubsampledSymmetric(samplingRate, at, l);
      intCache.set(l, v);
    }
    return v;
  };
  return orders.map((alpha) => {
    const hi = Math.max(2, Math.ceil(alpha));
    if (!Number.isFinite(at(hi))) return samplingRate === 0 ? 0 : Infinity;
    if (Number.isInteger(alpha)) return sub(alpha);
    return Math.min(rdpPoissonSubsampledSymmetric(samplingRate, at, alpha), chordOfIntegerOrders(sub, alpha));
  });
}

/**
 * Rigorous RDP curve of the integer mechanism when its unsampled RDP is the Gaussian's, α/(2σ²)
 * (the distributed discrete Gaussian at the coordinator's shares, where KLS21's τ underflows):
 * rdpPoissonSubsampledSymmetricCurve with rdpAt(l) = l/(2σ²). Equal to the exact subsampled
 * Gaussian RDP at integer orders, an upper bound on it at fractional ones. What the driver
 * calibrates σ on. Throws InvalidArgumentError for σ < 0 or an order <= 1.
 */
export function rdpPoissonSubsampledGaussianSymmetricBound(
  samplingRate: number,
  noiseMultiplier: number,
  orders: readonly number[],
): number[] {
  requireNonNegative('noiseMultiplier', noiseMultiplier);
  const inv = noiseMultiplier === 0 ? Infinity : 1 / (2 * noiseMultiplier * noiseMultiplier);
  return rdpPoissonSubsampledSymmetricCurve(samplingRate, (l) => l * inv, orders);
}

/** ε (and the order attaining it) from an RDP curve at a target δ. */
export interface EpsilonAtOrder {
  epsilon: number;
  order: number;
}

/**
 * The smallest ε such that a mechanism with the given RDP curve is (ε, δ)-DP, and the order that
 * attains it. `conversion` (default 'improved'):
 *  - 'improved': ε = r + log1p(−1/α) − log(δα)/(α−1) (Canonne, Kamath, Steinke 2020, "The
 *    Discrete Gaussian for Differential Privacy", Proposition 12 in v4; Balle et al. 2020,
 *    "Hypothesis Testing Interpretations and Renyi Differential Privacy", Theorem 21), with
 *    dp_accounting's KL shortcut (ε = 0 when δ² > 1 − e^{−r}) and orders <= 1.01 excluded;
 *  - 'classic': ε = r − log(δ)/(α−1) (Mironov 2017, "Rényi Differential Privacy", Prop. 3).
 * δ = 0 gives ε = 0 if the curve is identically 0, else ∞. The result is never negative.
 * Throws InvalidArgumentError for δ outside [0, 1), mismatched lengths, or an order <= 1.
 */
export function epsilonFromRdp(
  orders: readonly number[],
  rdp: readonly number[],
  delta: number,
  conversion: RdpConversion = 'improved',
): EpsilonAtOrder {
  if (!(delta >= 0 && delta < 1)) {
    throw new InvalidArgumentError('delta', `delta must be in [0, 1), got ${delta}`);
  }
  checkOrders(orders);
  if (orders.length !== rdp.length) {
    throw new InvalidArgumentError('rdp', `rdp has ${rdp.length} values for ${orders.length} orders`);
  }
  if (delta === 0) {
    return rdp.every((r) => r === 0) ? { epsilon: 0, order: 0 } : { epsilon: Infinity, order: 0 };
  }
  const logDelta = Math.log(delta);
  let best = Infinity;
  let bestOrder = orders[0]!;
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!;
    const r = rdp[k]!;
    let eps: number;
    if (Number.isNaN(r)) eps = Infinity;
    else if (conversion === 'classic') eps = r < 0 ? 0 : r - logDelta / (a - 1);
    else if (r < 0) eps = 0;
    else if (delta * delta + Math.expm1(-r) > 0) eps = 0;
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - (logDelta + Math.log(a)) / (a - 1);
    else eps = Infinity;
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: Math.max(0, best), order: bestOrder };
}

/** δ (and the order attaining it) from an RDP curve at a target ε. */
export interface DeltaAtOrder {
  delta: number;
  order: number;
}

/**
 * The smallest δ such that a mechanism with the given RDP curve is (ε, δ)-DP (the improved
 * conversion, Canonne–Kamath–Steinke 2020 Prop. 12, combined with the KL bound δ <= √(1−e^{−r}),
 * as dp_accounting's compute_delta), and the order that attains it. Capped at 1.
 * Throws InvalidArgumentError for ε < 0, mismatched lengths, or an order <= 1.
 */
export function deltaFromRdp(
  orders: readonly number[],
  rdp: readonly number[],
  epsilon: number,
): DeltaAtOrder {
  requireNonNegative('epsilon', epsilon);
  checkOrders(orders);
  if (orders.length !== rdp.length) {
    throw new InvalidArgumentError('rdp', `rdp has ${rdp.length} values for ${orders.length} orders`);
  }
  let best = Infinity;
  let bestOrder = orders[0]!;
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!;
    const r = rdp[k]!;
    let logDelta: number;
    if (r < 0 || r === 0) logDelta = -Infinity;
    else if (Number.isNaN(r)) logDelta = Infinity;
    else logDelta = 0.5 * Math.log1p(-Math.exp(-r));
    if (a > 1.01 && r >= 0) {
      const bound = (a - 1) * (r - epsilon + Math.log1p(-1 / a)) - Math.log(a);
      logDelta = Math.min(logDelta, bound);
    }
    if (logDelta < best) {
      best = logDelta;
      bestOrder = a;
    }
  }
  return { delta: Math.min(Math.exp(best), 1), order: bestOrder };
}

/** Checks δ for the accountant APIs, which need δ in (0, 1). */
export function checkTargetDelta(delta: number): void {
  requireDelta('delta', delta);
}
