// Cryptographically secure randomness for the noise samplers: node:crypto's CSPRNG, read in
// batches (one randomFillSync per 64 KiB) and handed out as words, bits, uniform integers and
// exact Bernoulli draws. Math.random is never used: noise must be unpredictable to whoever sees
// the released values.
import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';
import { LIMB_BASE, type Wide } from './uint-wide.js';

const BUFFER_WORDS = 16384; // 64 KiB per refill
const TWO_POW_32 = 4294967296;
const TWO_POW_52 = 4503599627370496;

/** A source of uniform random bits, from node:crypto unless a `fill` function is supplied (tests). */
export class SecureRandom {
  private readonly words = new Uint32Array(BUFFER_WORDS);
  private pos = BUFFER_WORDS;
  private bitWord = 0;
  private bitsLeft = 0;
  private readonly fill: (buf: Uint32Array) => void;
  // uniformInt's rejection limit for the last n <= 2^32 it was asked for (samplers repeat one n).
  private limitN = 0;
  private limit = 0;

  /** `fill` overwrites its argument with random words; default crypto.randomFillSync. */
  constructor(fill: (buf: Uint32Array) => void = (b) => void randomFillSync(b)) {
    this.fill = fill;
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    if (this.pos === BUFFER_WORDS) {
      this.fill(this.words);
      this.pos = 0;
    }
    return this.words[this.pos++]!;
  }

  /** One uniform bit (0 or 1). */
  bit(): number {
    if (this.bitsLeft === 0) {
      this.bitWord = this.uint32();
      this.bitsLeft = 32;
    }
    this.bitsLeft--;
    const b = this.bitWord & 1;
    this.bitWord >>>= 1;
    return b;
  }

  /** A uniform double in [0, 1) with 53 random bits (every value a multiple of 2^-53). */
  uniform(): number {
    const hi = this.uint32() >>> 5; // 27 bits
    const lo = this.uint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * A uniform integer in [0, n), 1 <= n <= 2^52, by rejection (no modulo bias). Throws
   * InvalidArgumentError for other n.
   */
  uniformInt(n: number): number {
    if (!(Number.isInteger(n) && n >= 1 && n <= TWO_POW_52)) {
      throw new InvalidArgumentError('n', `n must be an integer in [1, 2^52], got ${n}`);
    }
    // x − floor(x / n)·n is x mod n exactly: for x = q·n + r with 0 < r < n, x / n is at least
    // 1/n below q + 1, more than half an ulp of q + 1 since n·(q + 1) <= x + n < 2^53, so the
    // rounded quotient floors to q. (A double `%` is a slower library call.)
    if (n <= TWO_POW_32) {
      if (n !== this.limitN) {
        this.limitN = n;
        this.limit = TWO_POW_32 - (TWO_POW_32 % n);
      }
      const limit = this.limit;
      for (;;) {
        const x = this.uint32();
        if (x < limit) return x - Math.floor(x / n) * n;
      }
    }
    const range = TWO_POW_52;
    const limit = range - (range % n);
    for (;;) {
      const x = (this.uint32() & 0xfffff) * TWO_POW_32 + this.uint32();
      if (x < limit) return x - Math.floor(x / n) * n;
    }
  }

  /**
   * An exact Bernoulli(num/den) draw for integers 0 <= num <= den: compares a lazily drawn uniform
   * binary fraction with the binary expansion of num/den (2 bits on average). Uses doubles while
   * den < 2^52 and bigint beyond, so it is exact for any size (bernoulliWide is the same draw on
   * fixed-width integers, for callers that must not allocate a bigint per draw).
   */
  bernoulli(num: number | bigint, den: number | bigint): boolean {
    if (typeof num === 'number' && typeof den === 'number' && den < TWO_POW_52)
      return this.bernoulliDouble(num, den);
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
      const ub = this.bit();
      if (ub !== pb) return ub < pb;
      if (r === 0n) return false;
    }
  }

  /** bernoulli(num, den) for integers 0 <= num and 0 <= den < 2^52 (unchecked): doubles only. */
  bernoulliDouble(num: number, den: number): boolean {
    if (num >= den) return true;
    let r = num;
    for (;;) {
      r *= 2;
      let pb = 0;
      if (r >= den) {
        pb = 1;
        r -= den;
      }
      const ub = this.bit();
      if (ub !== pb) return ub < pb;
      if (r === 0) return false;
    }
  }

  /**
   * bernoulli(num, den) for fixed-width integers (uint-wide.ts) 0 <= num, den < 2^144: the same
   * comparison, consuming the same bits, with no allocation. num and den are not modified.
   */
  bernoulliWide(num: Wide, den: Wide): boolean {
    // The remainder r < den is kept in three local limbs; its top limb may reach 2^49 after a
    // doubling, still exact in a double, so no carry ever leaves it.
    const d0 = den[0]!;
    const d1 = den[1]!;
    const d2 = den[2]!;
    let r0 = num[0]!;
    let r1 = num[1]!;
    let r2 = num[2]!;
    if (r2 > d2 || (r2 === d2 && (r1 > d1 || (r1 === d1 && r0 >= d0)))) return true;
    for (;;) {
      r0 *= 2;
      r1 *= 2;
      r2 *= 2;
      if (r0 >= LIMB_BASE) {
        r0 -= LIMB_BASE;
        r1 += 1;
      }
      if (r1 >= LIMB_BASE) {
        r1 -= LIMB_BASE;
        r2 += 1;
      }
      let pb = 0;
      if (r2 > d2 || (r2 === d2 && (r1 > d1 || (r1 === d1 && r0 >= d0)))) {
        pb = 1;
        r0 -= d0;
        r1 -= d1;
        r2 -= d2;
        if (r0 < 0) {
          r0 += LIMB_BASE;
          r1 -= 1;
        }
        if (r1 < 0) {
          r1 += LIMB_BASE;
          r2 -= 1;
        }
      }
      const ub = this.bit();
      if (ub !== pb) return ub < pb;
      if (r0 === 0 && r1 === 0 && r2 === 0) return false;
    }
  }
}

let shared: SecureRandom | undefined;

/** The process-wide SecureRandom used when a sampler is not given one. */
export function defaultRandom(): SecureRandom {
  shared ??= new SecureRandom();
  return shared;
}
