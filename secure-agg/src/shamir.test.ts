import { expect } from 'chai';
import fc from 'fast-check';
import { ThresholdError } from './errors.js';
import {
  FIELD_PRIME,
  combineShares,
  fieldToBytes,
  invert,
  randomFieldElement,
  splitSecret,
} from './shamir.js';

function modpow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

describe('shamir', () => {
  it('works over a prime: 2^256 - 189 passes Miller-Rabin with 16 bases', () => {
    const p = FIELD_PRIME;
    let d = p - 1n;
    let s = 0;
    while ((d & 1n) === 0n) {
      d >>= 1n;
      s++;
    }
    for (const a of [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n, 41n, 43n, 47n, 53n]) {
      let x = modpow(a, d, p);
      let probable = x === 1n || x === p - 1n;
      for (let i = 1; i < s && !probable; i++) {
        x = (x * x) % p;
        probable = x === p - 1n;
      }
      expect(probable, `witness ${a}`).to.equal(true);
    }
  });

  it('inverts nonzero elements', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: FIELD_PRIME - 1n }), (a) => {
        expect((a * invert(a)) % FIELD_PRIME).to.equal(1n);
      }),
      { numRuns: 50 },
    );
  });

  it('reconstructs from any t of n shares, for random t ≤ n ≤ 60', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 60 })
          .chain((n) =>
            fc.tuple(fc.constant(n), fc.integer({ min: 1, max: n }), fc.infiniteStream(fc.integer())),
          ),
        ([n, t, rnd]) => {
          const secret = fieldToBytes(randomFieldElement());
          const xs = Array.from({ length: n }, (_, i) => i + 1);
          const shares = splitSecret(secret, xs, t);
          // A random subset of size ≥ t, in random order.
          const it = rnd[Symbol.iterator]();
          const pick = shares
            .map((s) => ({ s, k: Number(it.next().value) }))
            .sort((a, b) => a.k - b.k)
            .slice(0, t + (Math.abs(Number(it.next().value)) % (n - t + 1)))
            .map((x) => x.s);
          expect(Buffer.from(combineShares(pick, t)).equals(Buffer.from(secret))).to.equal(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reconstructs correctly when Lagrange coefficients are reused, across more point sets than are kept', () => {
    const xs = Array.from({ length: 20 }, (_, i) => i + 1);
    // 12 holder sets (more than the 8 kept), each used for several secrets, interleaved.
    const sets = Array.from({ length: 12 }, (_, k) => xs.slice(k, k + 7));
    for (let round = 0; round < 3; round++) {
      for (const set of [...sets, ...sets.slice().reverse()]) {
        const secret = fieldToBytes(randomFieldElement());
        const shares = splitSecret(secret, xs, 7).filter((sh) => set.includes(sh.x));
        expect(Buffer.from(combineShares(shares, 7)).equals(secret)).to.equal(true);
      }
    }
  });

  it('refuses to reconstruct from fewer than t shares, naming how many are missing', () => {
    const shares = splitSecret(fieldToBytes(42n), [1, 2, 3, 4, 5], 3);
    expect(() => combineShares(shares.slice(0, 2), 3))
      .to.throw(ThresholdError)
      .with.property('message', '2 shares cannot reconstruct a 3-of-n secret; need 1 more');
  });

  it('rejects repeated or zero evaluation points and out-of-range thresholds', () => {
    const s = fieldToBytes(1n);
    expect(() => splitSecret(s, [1, 1, 2], 2)).to.throw('share point 1 appears twice');
    expect(() => splitSecret(s, [0, 1], 2)).to.throw('share point 0 is not an integer in [1, 2^31)');
    expect(() => splitSecret(s, [1, 2], 3)).to.throw('threshold: must be an integer in [1, 2], got 3');
  });
});
