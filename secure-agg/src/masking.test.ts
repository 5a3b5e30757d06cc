import { expect } from 'chai';
import fc from 'fast-check';
import { CHI2_255_P1E6, chiSquareBytes } from './testing/stats.js';
import {
  addInto,
  addMaskInto,
  expandMask,
  ringFromBytes,
  ringToBytes,
  toSigned,
  words32,
} from './masking.js';

const ctx = { sessionId: new Uint8Array(16).fill(1), round: 0 };

describe('masking', () => {
  it('adds and subtracts in Z_2^64 exactly like BigInt arithmetic, carries included', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
          { minLength: 1, maxLength: 50 },
        ),
        (pairs) => {
          const a = BigUint64Array.from(pairs.map((p) => p[0]));
          const b = BigUint64Array.from(pairs.map((p) => p[1]));
          const sum = a.slice();
          addInto(sum, b);
          const diff = a.slice();
          addInto(diff, b, -1);
          pairs.forEach(([x, y], i) => {
            expect(sum[i]).to.equal((x + y) % 2n ** 64n);
            expect(diff[i]).to.equal((((x - y) % 2n ** 64n) + 2n ** 64n) % 2n ** 64n);
          });
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a mask added and subtracted cancels, across chunk boundaries, for both widths', () => {
    for (const bits of [32, 64] as const) {
      const len = (1 << 16) + 3; // more than one 256 KiB chunk of keystream for 64-bit words
      const v = expandMask(new Uint8Array(32).fill(5), ctx, bits, len);
      const before = Buffer.from(ringToBytes(v));
      const seed = new Uint8Array(32).fill(6);
      addMaskInto(v, seed, ctx, 1);
      expect(Buffer.from(ringToBytes(v)).equals(before)).to.equal(false);
      addMaskInto(v, seed, ctx, -1);
      expect(Buffer.from(ringToBytes(v)).equals(before)).to.equal(true);
    }
  });

  it('the 64-bit mask is the 32-bit keystream read as little-endian pairs', () => {
    const seed = new Uint8Array(32).fill(8);
    const m32 = expandMask(seed, ctx, 32, 20) as Uint32Array;
    const m64 = expandMask(seed, ctx, 64, 10);
    expect(Array.from(words32(m64))).to.deep.equal(Array.from(m32));
  });

  it('expanded masks look uniform (byte chi-square)', () => {
    const m = expandMask(new Uint8Array(32).fill(2), ctx, 32, 1 << 16);
    expect(chiSquareBytes(ringToBytes(m))).to.be.below(CHI2_255_P1E6);
  });

  it('round-trips bytes and refuses a wrong length', () => {
    const v = Uint32Array.from([1, 2, 0xffffffff]);
    expect(Array.from(ringFromBytes(ringToBytes(v), 32, 3) as Uint32Array)).to.deep.equal([1, 2, 0xffffffff]);
    expect(Array.from(toSigned(v) as Int32Array)).to.deep.equal([1, 2, -1]);
    expect(() => ringFromBytes(new Uint8Array(11), 32, 3)).to.throw(
      'a vector of 3 32-bit words is 12 bytes, got 11',
    );
  });
});
