// Special functions the accountants need, in float64, accurate to a few ulps over the ranges the
// accountants use them in (checked against scipy values in special-functions.test.ts).
// No library: the main entry of @tensorguard/dp has no dependencies.

const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const SQRT_PI = Math.sqrt(Math.PI);

/** log(exp(a) + exp(b)) without overflow; -Infinity is the log of 0. */
export function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  if (a === Infinity || b === Infinity) return Infinity;
  const hi = Math.max(a, b);
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}

/** log(exp(a) - exp(b)) for a >= b; -Infinity when a === b. */
export function logSub(a: number, b: number): number {
  if (b === -Infinity) return a;
  if (a === b) return -Infinity;
  return a + Math.log1p(-Math.exp(b - a));
}

/** sin(πx), exact at integers and half-integers (argument reduced before multiplying by π). */
function sinPi(x: number): number {
  let r = x % 2; // (-2, 2)
  if (r < -1) r += 2;
  else if (r > 1) r -= 2; // now in [-1, 1]
  if (r === 0 || r === 1 || r === -1) return 0;
  if (r > 0.5) r = 1 - r;
  else if (r < -0.5) r = -1 - r;
  return Math.sin(Math.PI * r);
}

// Stirling series for log Γ(x), x >= 15: terms B_{2k} / (2k (2k-1) x^{2k-1}) up to k = 8; the
// first omitted term is below 1e-19 there.
const STIRLING = [1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400];

function lgammaLarge(x: number): number {
  const inv = 1 / x;
  const inv2 = inv * inv;
  let series = 0;
  for (let k = STIRLING.length - 1; k >= 0; k--) series = series * inv2 + STIRLING[k]!;
  return (x - 0.5) * Math.log(x) - x + LOG_SQRT_2PI + series * inv;
}

/**
 * log|Γ(x)| (scipy's `gammaln`): the log of the absolute value of the gamma function, for any
 * real x. Returns Infinity at the poles (0, -1, -2, ...). Negative arguments use the reflection
 * formula, which the fractional-order RDP sum needs (binomial coefficients C(α, i) with i > α).
 */
export function logGamma(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x <= 0 && Number.isInteger(x)) return Infinity;
  if (x < 0.5) {
    // Γ(x) Γ(1 - x) = π / sin(πx)
    return Math.log(Math.PI / Math.abs(sinPi(x))) - logGamma(1 - x);
  }
  if (x >= 15) return lgammaLarge(x);
  // Shift up: Γ(x) = Γ(x + n) / (x (x+1) ... (x+n-1)); the product stays far from overflow.
  let prod = 1;
  let y = x;
  while (y < 15) {
    prod *= y;
    y += 1;
  }
  return lgammaLarge(y) - Math.log(prod);
}

/** log C(n, k) = log Γ(n+1) − log Γ(k+1) − log Γ(n−k+1), for real n and k (absolute values). */
export function logBinomial(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/** erfc(x) for x >= 2 divided by exp(-x²): continued fraction (Lentz), converges fast there. */
function erfcxContinuedFraction(x: number): number {
  // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return 1 / (f * SQRT_PI);
}

/** erf(x) for |x| < 2 by the all-positive series erf(x) = 2/√π e^{-x²} Σ 2^n x^{2n+1}/(2n+1)!!. */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return (2 / SQRT_PI) * Math.exp(-x2) * sum;
}

/** The complementary error function erfc(x) = 1 − erf(x), with small relative error in the tail. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2) return 1 - erfSeries(x);
  if (x > 27) return 0;
  return Math.exp(-x * x) * erfcxContinuedFraction(x);
}

/** log(erfc(x)), accurate for large positive x where erfc underflows (scipy: log_ndtr(−x√2)+log 2). */
export function logErfc(x: number): number {
  if (x < 2) return Math.log(erfc(x));
  return Math.log(erfcxContinuedFraction(x)) - x * x;
}

/** Standard normal survival function P(Z > x) = erfc(x/√2)/2. */
export function normalSf(x: number): number {
  return 0.5 * erfc(x / Math.SQRT2);
}

/** Standard normal CDF P(Z <= x). */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** log P(Z > x) for a standard normal Z, accurate far in the tail. */
export function logNormalSf(x: number): number {
  return Math.log(0.5) + logErfc(x / Math.SQRT2);
}
