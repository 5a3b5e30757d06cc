import { expect } from 'chai';
import fc from 'fast-check';
import { CHI2_255_P1E6, chiSquareBytes } from './testing/stats.js';
import { NATIVE_KERNEL_FILE, nativeKernel } from './native-kernel.js';
import fs from 'node:fs';
import {
  DEFAULT_RING_ADD_PATH,
  RING_ADD_PATHS,
  addInto,
  addMaskInto,
  addMasksFrom,
  addMasksInto,
  allocRing,
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

  it('the default path is the native kernel where setup built it, else the WebAssembly SIMD path', () => {
    // Setup compiles native/mask_kernel.c wherever a C compiler and Node's headers exist (this
    // machine has both, so the addon is expected here; elsewhere the SIMD path is the default).
    const built = fs.existsSync(NATIVE_KERNEL_FILE) && process.env.TENSORGUARD_MASK_KERNEL !== 'js';
    expect(DEFAULT_RING_ADD_PATH).to.equal(built ? 'native' : 'simd');
    expect(RING_ADD_PATHS).to.include.members(['simd', 'scalar']);
    if (built) expect(['vaes', 'aesni']).to.include(nativeKernel()!.path());
  });

  // Each fast path against the scalar reference; the native kernel on each of its instruction
  // sets (VAES + AVX-512 and plain AES-NI, forced) where the CPU has them.
  const fastPaths: { name: string; path: 'native' | 'simd'; force?: 'aesni' }[] = [
    ...(RING_ADD_PATHS.includes('native')
      ? [
          { name: `native (${nativeKernel()!.path()})`, path: 'native' as const },
          ...(nativeKernel()!.path() === 'vaes'
            ? [{ name: 'native (AES-NI, forced)', path: 'native' as const, force: 'aesni' as const }]
            : []),
        ]
      : []),
    { name: 'WebAssembly SIMD', path: 'simd' },
  ];
  for (const fast of fastPaths)
    describe(`the ${fast.name} path equals the scalar reference`, () => {
      before(() => {
        if (fast.force) nativeKernel()!.forcePath(fast.force);
      });
      after(() => {
        if (fast.force) nativeKernel()!.forcePath('auto');
      });
      // Lengths: short ones (below one 16-byte vector, odd counts of words), and long ones crossing
      // kernel chunks (32 KiB on the SIMD path, 16 KiB in the native kernel), none rounded to a
      // vector width. Targets sit at a random element offset inside a larger buffer, as views do.
      const lengths = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 4000, max: 20_000 }));
      const bitsArb = fc.constantFrom(32 as const, 64 as const);
      const signArb = fc.constantFrom(1 as const, -1 as const);
      const randomRing = (bits: 32 | 64, length: number, offset: number, fill: number) => {
        const whole = allocRing(bits, length + offset);
        const w = words32(whole);
        for (let i = 0, x = fill | 1; i < w.length; i++) {
          x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x297a2d39; // cheap mixing, not crypto
          w[i] = x ^ (x >>> 12);
        }
        return whole.subarray(offset) as typeof whole;
      };
      const bytesOf = (v: Uint32Array | BigUint64Array) => Buffer.from(ringToBytes(v));

      it('addInto, for random lengths, both widths and both signs', () => {
        fc.assert(
          fc.property(
            bitsArb,
            lengths,
            signArb,
            fc.integer({ min: 0, max: 3 }),
            fc.integer(),
            (bits, n, sign, offset, fill) => {
              const t = randomRing(bits, n, offset, fill);
              const m = randomRing(bits, n, 3 - offset, ~fill);
              const out = t.slice();
              const ref = t.slice();
              addInto(out, m, sign, fast.path);
              addInto(ref, m, sign, 'scalar');
              expect(bytesOf(out).equals(bytesOf(ref))).to.equal(true);
              expect(bytesOf(m).equals(bytesOf(randomRing(bits, n, 3 - offset, ~fill)))).to.equal(true); // m untouched
            },
          ),
          { numRuns: 150 },
        );
      });

      it('addMaskInto, for random lengths, both widths and both signs', () => {
        fc.assert(
          fc.property(
            bitsArb,
            lengths,
            signArb,
            fc.integer({ min: 0, max: 3 }),
            fc.uint8Array({ minLength: 32, maxLength: 32 }),
            (bits, n, sign, offset, seed) => {
              const t = randomRing(bits, n, offset, n);
              const out = t;
              const ref = t.slice();
              addMaskInto(out, seed, ctx, sign, fast.path);
              addMaskInto(ref, seed, ctx, sign, 'scalar');
              expect(bytesOf(out).equals(bytesOf(ref))).to.equal(true);
              // neither path wrote into the words before the view
              const prefix = (v: Uint32Array | BigUint64Array) => Buffer.from(v.buffer, 0, v.byteOffset);
              expect(prefix(out).equals(prefix(randomRing(bits, n, offset, n)))).to.equal(true);
            },
          ),
          { numRuns: 150 },
        );
      });
      it('addMasksInto (one pass for many masks) equals addMaskInto on the reference, mask by mask', () => {
        fc.assert(
          fc.property(
            bitsArb,
            lengths,
            fc.array(fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), signArb), { maxLength: 5 }),
            (bits, n, masks) => {
              const out = randomRing(bits, n, 1, n);
              const ref = out.slice();
              addMasksInto(
                out,
                masks.map(([seed, sign]) => ({ seed, sign })),
                ctx,
                fast.path,
              );
              for (const [seed, sign] of masks) addMaskInto(ref, seed, ctx, sign, 'scalar');
              expect(bytesOf(out).equals(bytesOf(ref))).to.equal(true);
            },
          ),
          { numRuns: 100 },
        );
      });
      it('addMasksFrom (source to a fresh target) equals copy-then-addMaskInto on the reference, source untouched', () => {
        fc.assert(
          fc.property(
            bitsArb,
            lengths,
            fc.integer({ min: 0, max: 3 }),
            fc.array(fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), signArb), { maxLength: 5 }),
            fc.constantFrom<'native' | 'simd' | 'scalar'>(fast.path, 'scalar'),
            (bits, n, offset, masks, path) => {
              const source = randomRing(bits, n, offset, n);
              const before = Buffer.from(bytesOf(source));
              const out = allocRing(bits, n);
              addMasksFrom(
                out,
                source,
                masks.map(([seed, sign]) => ({ seed, sign })),
                ctx,
                path,
              );
              const ref = source.slice();
              for (const [seed, sign] of masks) addMaskInto(ref, seed, ctx, sign, 'scalar');
              expect(bytesOf(out).equals(bytesOf(ref))).to.equal(true);
              expect(bytesOf(source).equals(before)).to.equal(true);
            },
          ),
          { numRuns: 100 },
        );
        expect(() => addMasksFrom(allocRing(32, 3), allocRing(64, 3), [], ctx)).to.throw(
          'cannot mask a 64-bit vector of length 3 into a 32-bit vector of length 3',
        );
      });
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
