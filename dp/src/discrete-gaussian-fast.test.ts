import { expect } from 'chai';
import { DiscreteGaussianSampler, bernoulliExpNegLe1Wide, exactVariance } from './discrete-gaussian.js';
import {
  ReferenceDiscreteGaussianSampler,
  referenceBernoulli,
  referenceBernoulliExpNegLe1,
  referenceUniformInt,
} from './discrete-gaussian-reference.js';
import { SecureRandom } from './random.js';
import {
  LIMB_BASE,
  WIDE_BITS,
  add,
  cmp,
  isZero,
  mul,
  mulSmall,
  setBigInt,
  setNumber,
  shl1,
  squareNumber,
  sub,
  toBigInt,
  wideZero,
} from './uint-wide.js';

/** A deterministic word stream (mulberry32 from `seed`): two SecureRandoms with one seed agree. */
function seeded(seed: number): SecureRandom {
  let s = seed >>> 0;
  return new SecureRandom((buf) => {
    for (let i = 0; i < buf.length; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 15), z | 1);
      z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
      buf[i] = (z ^ (z >>> 14)) >>> 0;
    }
  });
}

const TOP = (1n << BigInt(WIDE_BITS)) - 1n;

function wideOf(x: bigint): Float64Array {
  const w = wideZero();
  expect(setBigInt(w, x), `setBigInt(${x})`).to.equal(true);
  return w;
}

/** Random bigints below 2^144 with random bit lengths, plus the edge values. */
function wideValues(seed: number, count: number): bigint[] {
  const r = seeded(seed);
  const edges = [
    0n,
    1n,
    2n,
    2n ** 32n - 1n,
    2n ** 48n - 1n,
    2n ** 48n,
    2n ** 52n,
    2n ** 53n,
    2n ** 96n - 1n,
    2n ** 96n,
  ];
  const out = [...edges, 2n ** 143n, TOP - 1n, TOP];
  for (let i = 0; i < count; i++) {
    let x = 0n;
    for (let j = 0; j < 5; j++) x = (x << 32n) | BigInt(r.uint32());
    out.push(x & ((1n << BigInt(r.uniformInt(WIDE_BITS + 1))) - 1n));
  }
  return out;
}

describe('uint-wide (fixed-width integers for the discrete Gaussian)', () => {
  const values = wideValues(7, 300);
  const pairs: [bigint, bigint][] = [];
  for (let i = 0; i < values.length; i++) pairs.push([values[i]!, values[(i * 7 + 3) % values.length]!]);
  for (const a of values.slice(0, 13)) for (const b of values.slice(0, 13)) pairs.push([a, b]);

  it('round-trips bigints and numbers and rejects what does not fit', () => {
    for (const x of values) expect(toBigInt(wideOf(x))).to.equal(x);
    const w = wideZero();
    for (const x of [0, 1, 2 ** 32 - 1, 2 ** 48 - 1, 2 ** 48, 2 ** 52, 2 ** 53 - 1, 2 ** 53]) {
      expect(setNumber(w, x)).to.equal(true);
      expect(toBigInt(w)).to.equal(BigInt(x));
    }
    for (const x of [-1, 0.5, 2 ** 53 + 2, NaN, Infinity]) expect(setNumber(w, x), `${x}`).to.equal(false);
    expect(setBigInt(w, TOP + 1n)).to.equal(false);
    expect(setBigInt(w, -1n)).to.equal(false);
  });

  it('compares, adds, subtracts and doubles like bigint', () => {
    const out = wideZero();
    for (const [a, b] of pairs) {
      const wa = wideOf(a);
      const wb = wideOf(b);
      expect(cmp(wa, wb), `cmp ${a} ${b}`).to.equal(a < b ? -1 : a > b ? 1 : 0);
      expect(isZero(wa)).to.equal(a === 0n);
      const fits = a + b <= TOP;
      expect(add(out, wa, wb), `add fits ${a} ${b}`).to.equal(fits);
      if (fits) expect(toBigInt(out)).to.equal(a + b);
      const [hi, lo] = a >= b ? [wa, wb] : [wb, wa];
      sub(out, hi, lo);
      expect(toBigInt(out), `sub ${a} ${b}`).to.equal(a >= b ? a - b : b - a);
      out.set(wa);
      expect(shl1(out)).to.equal(2n * a <= TOP);
      if (2n * a <= TOP) expect(toBigInt(out)).to.equal(2n * a);
    }
  });

  it('multiplies like bigint, in place too, and reports overflow', () => {
    const out = wideZero();
    let overflowed = 0;
    for (const [a, b] of pairs) {
      const fits = a * b <= TOP;
      if (!fits) overflowed++;
      expect(mul(out, wideOf(a), wideOf(b)), `mul fits ${a} ${b}`).to.equal(fits);
      if (fits) expect(toBigInt(out), `mul ${a} ${b}`).to.equal(a * b);
      const sq = wideOf(a);
      expect(mul(sq, sq, sq)).to.equal(a * a <= TOP);
      if (a * a <= TOP) expect(toBigInt(sq), `square ${a}`).to.equal(a * a);
    }
    expect(overflowed).to.be.greaterThan(10);
    const r = seeded(11);
    for (const a of values) {
      for (const k of [0, 1, 2, 3, 1023, 2 ** 20, 2 ** 28 - 1, 2 ** 28, r.uniformInt(2 ** 28)]) {
        const w = wideOf(a);
        const fits = a * BigInt(k) <= TOP;
        expect(mulSmall(w, w, k), `mulSmall ${a} ${k}`).to.equal(fits);
        if (fits) expect(toBigInt(w)).to.equal(a * BigInt(k));
      }
    }
    expect(mulSmall(out, wideOf(5n), 2 ** 28 + 1)).to.equal(false);
    expect(mulSmall(out, wideOf(5n), 1.5)).to.equal(false);
    // The limbs hold 48 bits: 2^48 − 1 squared carries across every limb.
    expect(mul(out, wideOf(BigInt(LIMB_BASE) - 1n), wideOf(BigInt(LIMB_BASE) - 1n))).to.equal(true);
    expect(toBigInt(out)).to.equal((2n ** 48n - 1n) ** 2n);
  });

  it('squares numbers up to 2^53 like bigint', () => {
    const r = seeded(5);
    const xs = [0, 1, 2 ** 24 - 1, 2 ** 24, 2 ** 32 - 1, 2 ** 48 - 1, 2 ** 48, 2 ** 52, 2 ** 53 - 1, 2 ** 53];
    for (let i = 0; i < 2000; i++) xs.push(Math.floor(r.uniform() * 2 ** r.uniformInt(54)));
    const out = wideZero();
    for (const x of xs) {
      expect(squareNumber(out, x)).to.equal(true);
      expect(toBigInt(out), `${x}²`).to.equal(BigInt(x) ** 2n);
    }
    for (const x of [-1, 0.5, 2 ** 53 + 2, NaN]) expect(squareNumber(out, x), `${x}`).to.equal(false);
  });

  it('SecureRandom.uniformInt (cached limit, no double %) draws what it drew before', () => {
    const rn = seeded(9);
    const ns = [
      1,
      2,
      3,
      7,
      1001,
      65537,
      2 ** 20,
      2 ** 31 + 11,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 32 + 1,
      2 ** 52 - 3,
      2 ** 52,
    ];
    for (let i = 0; i < 40; i++) ns.push(1 + rn.uniformInt(2 ** (1 + rn.uniformInt(52))));
    for (const n of ns) {
      const a = seeded(n);
      const b = seeded(n);
      for (let i = 0; i < 200; i++) expect(a.uniformInt(n), `n = ${n}`).to.equal(referenceUniformInt(b, n));
      expect(a.uint32()).to.equal(b.uint32());
    }
    // One stream switching between n values (the cached limit must follow n).
    const a = seeded(77);
    const b = seeded(77);
    for (let i = 0; i < 2000; i++) {
      const n = ns[i % ns.length]!;
      expect(a.uniformInt(n), `n = ${n}`).to.equal(referenceUniformInt(b, n));
    }
  });

  it('SecureRandom.bernoulliWide draws what bernoulli draws, from the same bits', () => {
    const rs = seeded(3);
    let trues = 0;
    for (let i = 0; i < 3000; i++) {
      const den = values[rs.uniformInt(values.length)]! || 1n;
      const num = i % 10 === 0 ? den : den === 1n ? 0n : (den * BigInt(rs.uint32())) >> 32n;
      const a = seeded(1000 + i);
      const b = seeded(1000 + i);
      const got = a.bernoulliWide(wideOf(num), wideOf(den));
      expect(got, `Bernoulli(${num}/${den})`).to.equal(referenceBernoulli(b, num, den));
      expect(a.uint32()).to.equal(b.uint32()); // the same number of bits consumed
      if (got) trues++;
    }
    expect(trues).to.be.within(900, 2100);
  });
});

describe('DiscreteGaussianSampler on fixed-width integers: the same outputs as the bigint reference', () => {
  // Doubles path (0.5 .. 100), fixed-width path (the rest), power-of-two fallbacks of exactVariance
  // (3.7 → q = 16384, 0.001 → q = 65536, 1000.000123 → q = 32768, 2^20 − 2^-20 → q = 4096 with
  // D = 2pqt² near 2^105, the largest here), q > 1 convergents (1234.5, 777.777777, 3141.59...).
  const sigmas = [0.001, 0.5, 1, 3.7, 100, 777.777777, 1000.000123, 1234.5, Math.PI * 1000, 5e4, 9e5];
  const edge = [1e6 - 1e-7, 2 ** 20 - 2 ** -20];
  const perCase = 1000;

  it('the power-of-two fallback σ values really take it', () => {
    for (const [sigma, q] of [
      [3.7, 16384],
      [0.001, 65536],
      [1000.000123, 32768],
      [2 ** 20 - 2 ** -20, 4096],
    ] as const) {
      expect(exactVariance(sigma).denominator, `σ = ${sigma}`).to.equal(q);
    }
  });

  for (const sigma of [...sigmas, ...edge]) {
    it(`σ = ${sigma}: ${perCase} samples for each of 3 seeds equal the reference's`, () => {
      for (const seed of [1, 2, 0xdeadbeef]) {
        const a = seeded(seed);
        const b = seeded(seed);
        const fast = new DiscreteGaussianSampler(sigma, a);
        const ref = new ReferenceDiscreteGaussianSampler(sigma, b);
        const got = Array.from({ length: perCase }, () => fast.sample());
        const want = Array.from({ length: perCase }, () => ref.sample());
        expect(got).to.deep.equal(want);
        expect(a.uint32(), 'words consumed').to.equal(b.uint32());
        expect(new Set(got).size).to.be.greaterThan(Math.min(300, 2 * sigma));
      }
    });
  }

  it('the acceptance test agrees at every |y|, including those that leave 144 bits (bigint fallback)', () => {
    // Paths: |y| near t forms a in doubles (squareNumber); |y|·t·q >= 2^53 (|y| = 2^36 .. 2^53 at
    // σ ≈ 2^20) takes the general fixed-width path; a past 2^72 (|y| = 2^53 at σ = 9e5, whose
    // square passes 2^144) and |y| past 2^53 (which cannot be loaded) take the bigint path.
    for (const sigma of [1234.5, 9e5, 2 ** 20 - 2 ** -20]) {
      const ref0 = new ReferenceDiscreteGaussianSampler(sigma, seeded(0));
      const t = ref0.t;
      const ys = [
        0,
        1,
        t - 1,
        t,
        t + 1,
        3 * t,
        2 ** 30,
        2 ** 36,
        2 ** 40,
        2 ** 53,
        2 ** 53 + 2,
        2 ** 60,
        2 ** 80,
      ];
      let accepted = 0;
      for (const absY of ys) {
        for (let seed = 0; seed < 40; seed++) {
          const a = seeded(seed * 7919 + absY);
          const b = seeded(seed * 7919 + absY);
          const got = new DiscreteGaussianSampler(sigma, a).accept(absY);
          expect(got, `σ = ${sigma}, |y| = ${absY}, seed ${seed}`).to.equal(
            new ReferenceDiscreteGaussianSampler(sigma, b).accept(absY),
          );
          expect(a.uint32()).to.equal(b.uint32());
          if (got) accepted++;
        }
      }
      expect(accepted).to.be.greaterThan(40); // |y| near t accepts often; the huge ones never do
    }
  });

  it('Algorithm 1 continues in bigint when den·k would pass 2^144', () => {
    let odd = 0;
    for (const den of [2n ** 143n + 12345n, TOP, 2n ** 100n + 1n]) {
      for (const num of [den, den - 1n, den / 2n, 1n]) {
        for (let seed = 0; seed < 60; seed++) {
          const a = seeded(seed);
          const b = seeded(seed);
          const got = bernoulliExpNegLe1Wide(a, wideOf(num), wideOf(den), wideZero());
          expect(got, `${num}/${den} seed ${seed}`).to.equal(referenceBernoulliExpNegLe1(b, num, den));
          expect(a.uint32()).to.equal(b.uint32());
          if (got) odd++;
        }
      }
    }
    expect(odd).to.be.within(200, 600);
  });
});
