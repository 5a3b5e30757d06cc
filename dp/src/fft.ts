// Radix-2 complex FFT on split real/imaginary Float64Arrays, for PLD convolutions.

/** Smallest power of two >= n. */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Forward twiddles e^{−2πik/n}, k < n/2, for the last few sizes used (PLD sizes repeat round after round). */
const twiddleCache = new Map<number, { wr: Float64Array; wi: Float64Array }>();
const TWIDDLE_SIZES_KEPT = 4;

function twiddles(n: number): { wr: Float64Array; wi: Float64Array } {
  let t = twiddleCache.get(n);
  if (t) {
    twiddleCache.delete(n); // most recently used last
    twiddleCache.set(n, t);
    return t;
  }
  const half = n >> 1;
  t = { wr: new Float64Array(half), wi: new Float64Array(half) };
  // Each computed directly (not by repeated multiplication) to keep rounding error small.
  for (let k = 0; k < half; k++) {
    t.wr[k] = Math.cos((-2 * Math.PI * k) / n);
    t.wi[k] = Math.sin((-2 * Math.PI * k) / n);
  }
  twiddleCache.set(n, t);
  if (twiddleCache.size > TWIDDLE_SIZES_KEPT) twiddleCache.delete(twiddleCache.keys().next().value!);
  return t;
}

/**
 * In-place FFT of (re, im), whose common length must be a power of two. `inverse` computes the
 * unnormalised inverse transform (divide by the length afterwards). Stage `len` reads every
 * (n/len)-th entry of one size-n twiddle table, computed once per size.
 */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      const tr = re[i]!;
      re[i] = re[j]!;
      re[j] = tr;
      const ti = im[i]!;
      im[i] = im[j]!;
      im[j] = ti;
    }
  }
  if (n < 2) return;
  const { wr, wi } = twiddles(n);
  const sign = inverse ? -1 : 1;
  for (let len = 2; len <= n; len <<= 1) {
    const half = len >> 1;
    const stride = n / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < half; k++) {
        const c = wr[k * stride]!;
        const s = sign * wi[k * stride]!;
        const a = i + k;
        const b = a + half;
        const xr = re[b]! * c - im[b]! * s;
        const xi = re[b]! * s + im[b]! * c;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
      }
    }
  }
}

/**
 * Linear convolution of two non-negative sequences by FFT; tiny negative round-off is clamped. Two
 * transforms instead of three: a and b are packed as the real and imaginary parts of one sequence
 * z, whose transform Z gives A[k] = (Z[k] + conj Z[−k])/2 and B[k] = (Z[k] − conj Z[−k])/(2i).
 */
export function convolve(a: Float64Array, b: Float64Array): Float64Array {
  const outLen = a.length + b.length - 1;
  const n = nextPowerOfTwo(outLen);
  const zr = new Float64Array(n);
  const zi = new Float64Array(n);
  zr.set(a);
  zi.set(b);
  fft(zr, zi);
  const cr = new Float64Array(n);
  const ci = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const j = (n - k) & (n - 1);
    // Z[k] = pr + i·pi and conj Z[−k] = qr + i·qi.
    const pr = zr[k]!;
    const pi = zi[k]!;
    const qr = zr[j]!;
    const qi = -zi[j]!;
    const ar = (pr + qr) / 2;
    const ai = (pi + qi) / 2;
    const br = (pi - qi) / 2;
    const bi = (qr - pr) / 2;
    cr[k] = ar * br - ai * bi;
    ci[k] = ar * bi + ai * br;
  }
  fft(cr, ci, true);
  const out = new Float64Array(outLen);
  for (let k = 0; k < outLen; k++) out[k] = Math.max(0, cr[k]! / n);
  return out;
}
