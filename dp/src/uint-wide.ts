// Fixed-width unsigned integers for the exact discrete Gaussian sampler (discrete-gaussian.ts) and
// SecureRandom.bernoulliWide: values below 2^144 as three 48-bit limbs in a Float64Array, least
// significant first. Every operation is exact in doubles: sums, differences and doublings of
// 48-bit limbs stay below 2^50, and products are formed from 24-bit halves (each partial product
// below 2^48, each column of them plus its carry below 2^51 < 2^53). The caller allocates each
// value once (wideZero) and reuses it, so the sampler's hot path allocates nothing; operations
// whose result could pass 2^144 report it (return false) so the caller can fall back to bigint.
export const LIMB_BITS = 48;
export const LIMBS = 3;
/** Width of a Wide in bits. */
export const WIDE_BITS = LIMB_BITS * LIMBS; // 144

/** 2^48, the limb base. */
export const LIMB_BASE = 281474976710656;
const INV_BASE = 1 / LIMB_BASE; // exact (a power of two)
const HALF = 16777216; // 2^24
const INV_HALF = 1 / HALF;
const MAX_SMALL = 268435456; // 2^28: a 24-bit half · k + carry stays below 2^53
const TWO_POW_53 = 9007199254740992;

/** An unsigned integer below 2^144: LIMBS limbs of LIMB_BITS bits, least significant first. */
export type Wide = Float64Array;

/** A new Wide holding 0. */
export function wideZero(): Wide {
  return new Float64Array(LIMBS);
}

/** out = x for an integer 0 <= x <= 2^53; returns false (out unchanged) for any other x. */
export function setNumber(out: Wide, x: number): boolean {
  if (!(Number.isInteger(x) && x >= 0 && x <= TWO_POW_53)) return false;
  const hi = Math.floor(x * INV_BASE);
  out[0] = x - hi * LIMB_BASE;
  out[1] = hi;
  out[2] = 0;
  return true;
}

/** out = x for a bigint 0 <= x < 2^144; returns false (out unchanged) otherwise. */
export function setBigInt(out: Wide, x: bigint): boolean {
  if (x < 0n || x >> BigInt(WIDE_BITS) !== 0n) return false;
  for (let i = 0; i < LIMBS; i++) {
    out[i] = Number(x & 0xffffffffffffn);
    x >>= 48n;
  }
  return true;
}

/** The value of `a` as a bigint (for the fallback path and tests; allocates). */
export function toBigInt(a: Wide): bigint {
  return (BigInt(a[2]!) << 96n) | (BigInt(a[1]!) << 48n) | BigInt(a[0]!);
}

/** −1, 0 or 1 as a < b, a = b or a > b. */
export function cmp(a: Wide, b: Wide): number {
  for (let i = LIMBS - 1; i >= 0; i--) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Whether a = 0. */
export function isZero(a: Wide): boolean {
  return a[0] === 0 && a[1] === 0 && a[2] === 0;
}

/** out = a + b (out may be a or b); returns false when the sum passes 2^144 (out then unspecified). */
export function add(out: Wide, a: Wide, b: Wide): boolean {
  let s0 = a[0]! + b[0]!;
  let s1 = a[1]! + b[1]!;
  let s2 = a[2]! + b[2]!;
  if (s0 >= LIMB_BASE) {
    s0 -= LIMB_BASE;
    s1 += 1;
  }
  if (s1 >= LIMB_BASE) {
    s1 -= LIMB_BASE;
    s2 += 1;
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  return s2 < LIMB_BASE;
}

/** out = a − b for a >= b (out may be a or b); for a < b, out is unspecified. */
export function sub(out: Wide, a: Wide, b: Wide): void {
  let s0 = a[0]! - b[0]!;
  let s1 = a[1]! - b[1]!;
  let s2 = a[2]! - b[2]!;
  if (s0 < 0) {
    s0 += LIMB_BASE;
    s1 -= 1;
  }
  if (s1 < 0) {
    s1 += LIMB_BASE;
    s2 -= 1;
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
}

/** a = 2a in place; returns false when the result passes 2^144 (a then unspecified). */
export function shl1(a: Wide): boolean {
  return add(a, a, a);
}

/**
 * out = a · k for an integer 0 <= k <= 2^28 (out may be a); returns false when k is outside that
 * range (out unchanged) or the product passes 2^144 (out then unspecified).
 */
export function mulSmall(out: Wide, a: Wide, k: number): boolean {
  if (!(Number.isInteger(k) && k >= 0 && k <= MAX_SMALL)) return false;
  let carry = 0; // < 2^29
  for (let i = 0; i < LIMBS; i++) {
    const limb = a[i]!;
    const h = Math.floor(limb * INV_HALF);
    const l = limb - h * HALF;
    const t1 = l * k + carry; // < 2^52 + 2^29
    const t1h = Math.floor(t1 * INV_HALF);
    const t2 = h * k + t1h; // < 2^52 + 2^29
    carry = Math.floor(t2 * INV_HALF);
    out[i] = (t2 - carry * HALF) * HALF + (t1 - t1h * HALF);
  }
  return carry === 0;
}

// 24-bit digits of mul's operands and product (module scratch: mul allocates nothing).
const digitsA = new Float64Array(2 * LIMBS);
const digitsB = new Float64Array(2 * LIMBS);
const digitsP = new Float64Array(2 * LIMBS);

/** The 24-bit digits of a into d; returns the index of the top nonzero digit (−1 for 0). */
function toDigits(a: Wide, d: Float64Array): number {
  let top = -1;
  for (let i = 0; i < LIMBS; i++) {
    const limb = a[i]!;
    const h = Math.floor(limb * INV_HALF);
    d[2 * i] = limb - h * HALF;
    d[2 * i + 1] = h;
    if (limb !== 0) top = h !== 0 ? 2 * i + 1 : 2 * i;
  }
  return top;
}

/** out = a · b (a = b squares; out may be a or b). Returns false when the product passes 2^144. */
export function mul(out: Wide, a: Wide, b: Wide): boolean {
  const n = 2 * LIMBS;
  const ta = toDigits(a, digitsA);
  const tb = toDigits(b, digitsB);
  if (ta < 0 || tb < 0) {
    out.fill(0);
    return true;
  }
  // The product is at least 2^(24·(ta+tb)): past the width when ta + tb >= 2·LIMBS.
  if (ta + tb >= n) return false;
  let carry = 0;
  for (let c = 0; c < n; c++) {
    let s = carry;
    const lo = c - tb > 0 ? c - tb : 0;
    const hi = c < ta ? c : ta;
    for (let i = lo; i <= hi; i++) s += digitsA[i]! * digitsB[c - i]!; // <= 6 products < 2^48
    carry = Math.floor(s * INV_HALF);
    digitsP[c] = s - carry * HALF;
  }
  if (carry !== 0) return false;
  for (let i = 0; i < LIMBS; i++) out[i] = digitsP[2 * i + 1]! * HALF + digitsP[2 * i]!;
  return true;
}

/** out = x² for an integer 0 <= x <= 2^53 (below 2^106, so it always fits); false for other x. */
export function squareNumber(out: Wide, x: number): boolean {
  if (!(Number.isInteger(x) && x >= 0 && x <= TWO_POW_53)) return false;
  // x = x2·2^48 + x1·2^24 + x0 with x0, x1 < 2^24 and x2 <= 2^5; column j of the square is the
  // sum of x_i·x_(j−i), each column below 2^50.
  const x12 = Math.floor(x * INV_HALF);
  const x0 = x - x12 * HALF;
  const x2 = Math.floor(x12 * INV_HALF);
  const x1 = x12 - x2 * HALF;
  let s = x0 * x0;
  let c = Math.floor(s * INV_HALF);
  const d0 = s - c * HALF;
  s = 2 * x0 * x1 + c;
  c = Math.floor(s * INV_HALF);
  const d1 = s - c * HALF;
  s = x1 * x1 + 2 * x0 * x2 + c;
  c = Math.floor(s * INV_HALF);
  const d2 = s - c * HALF;
  s = 2 * x1 * x2 + c;
  c = Math.floor(s * INV_HALF);
  const d3 = s - c * HALF;
  s = x2 * x2 + c; // < 2^31: the top digits d4, d5
  out[0] = d1 * HALF + d0;
  out[1] = d3 * HALF + d2;
  out[2] = s;
  return true;
}
