import { expect } from 'chai';
import fc from 'fast-check';
import { createCipheriv } from 'node:crypto';
import { ConfigError, MalformedMessageError } from './errors.js';
import {
  decode,
  encode,
  encodeIntegers,
  encodeNative,
  encodeWithCoins,
  noiseTailBound,
  planEncoding,
  toIntegers,
  type Encoding,
} from './encoding.js';
import { addInto, allocRing, words32, type RingVector } from './masking.js';
import { nativeKernel } from './native-kernel.js';

/** The rounding loop as first written (one coin per coordinate, coins drawn 16384 at a time). */
function encodeReference(
  encoding: Encoding,
  values: ArrayLike<number>,
  integerNoise: ArrayLike<number> | undefined,
  fillCoins: (buf: Uint32Array) => void,
): RingVector {
  const out = allocRing(encoding.bits, values.length);
  const w = words32(out);
  const rand = new Uint32Array(16384);
  for (let i = 0; i < values.length; i++) {
    const j = i % rand.length;
    if (j === 0) fillCoins(rand);
    const v = values[i]! * encoding.scale;
    const f = Math.floor(v);
    let q = f + (rand[j]! < (v - f) * 4294967296 ? 1 : 0);
    if (integerNoise) q += integerNoise[i]!;
    if (encoding.bits === 32) w[i] = q;
    else {
      w[2 * i] = q;
      w[2 * i + 1] = Math.floor(q / 4294967296);
    }
  }
  return out;
}

/** A deterministic coin source (xorshift32), so two encoders can be fed the same coins. */
function coins(seed: number): (buf: Uint32Array) => void {
  let x = seed | 1;
  return (buf) => {
    for (let i = 0; i < buf.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf[i] = x >>> 0;
    }
  };
}

describe('encoding', () => {
  it('chooses 32 bits when the bound fits and 64 when it does not', () => {
    const small = planEncoding({ clipNorm: 1, scale: 2 ** 16, workers: 100, dimension: 1e6, noiseStd: 1 });
    expect(small.bits).to.equal(32);
    // 100·(65536 + 1) + noise tail < 2^31
    expect(small.sumBound).to.be.below(2 ** 31);
    const big = planEncoding({ clipNorm: 1, scale: 2 ** 24, workers: 1000, dimension: 1e6, noiseStd: 1 });
    expect(big.bits).to.equal(64);
    expect(big.encodedNormBound).to.equal(2 ** 24 + 1000);
  });

  it('refuses a configuration that could overflow, with the numbers in the message', () => {
    expect(() => planEncoding({ clipNorm: 1, scale: 2 ** 24, workers: 1000, dimension: 10, bits: 32 }))
      .to.throw(ConfigError)
      .with.property(
        'message',
        "bits: the sum of 1000 workers can reach 16777217000 (= 1000·(16777216·1 + 1) + noise tail 0.0 at failure probability 1e-9 over 10 coordinates), which does not fit in Z_2^32 (|sum| < 2^31 = 2147483648); use bits: 64 or 'auto', or lower the scale",
      );
    expect(() => planEncoding({ clipNorm: 1, scale: 2 ** 52, workers: 2, dimension: 1 })).to.throw(
      'scale: scale·clipNorm = 4503599627370496 exceeds 2^52',
    );
    expect(() => planEncoding({ clipNorm: 0, scale: 1, workers: 1, dimension: 1 })).to.throw(
      'clipNorm: must be a finite number > 0, got 0',
    );
  });

  it('the noise tail bound covers the Gaussian quantile', () => {
    // P[|N(0,σ²)| > a] ≤ δ/d needs a ≥ σ·√(2 ln(2d/δ)); Bernstein's bound is larger.
    const a = noiseTailBound(1000, 1e6, 1e-9);
    expect(a).to.be.at.least(1000 * Math.sqrt(2 * Math.log(2e15)));
  });

  it('decodes the exact integer sum of encoded vectors, for both widths and any signs', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(32 as const, 64 as const),
        fc.array(fc.array(fc.integer({ min: -1_000_000, max: 1_000_000 }), { minLength: 5, maxLength: 5 }), {
          minLength: 1,
          maxLength: 20,
        }),
        (bits, vectors) => {
          const sum = allocRing(bits, 5);
          for (const v of vectors) addInto(sum, encodeIntegers(bits, v));
          const want = [0, 1, 2, 3, 4].map((j) => vectors.reduce((s, v) => s + v[j]!, 0));
          expect(Array.from(toIntegers(sum))).to.deep.equal(want);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('the branch-free rounding loop equals the reference loop bit for bit, given the same coins', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(32 as const, 64 as const),
        fc.oneof(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 16000, max: 40000 })),
        fc.boolean(),
        fc.integer(),
        fc.constantFrom(1, 3.5, 2 ** 20),
        (bits, d, withNoise, seed, scale) => {
          const enc = planEncoding({ clipNorm: 1, scale, workers: 2, dimension: d, bits: 64 });
          const plan = { ...enc, bits };
          const values = new Float64Array(d);
          const noise = withNoise ? new Float64Array(d) : undefined;
          let x = seed | 1;
          for (let i = 0; i < d; i++) {
            x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x297a2d39;
            values[i] = (((x >>> 0) % 2001) - 1000) / (1000 * Math.sqrt(d)); // ‖x‖₂ ≤ 1
            if (noise) noise[i] = ((x >>> 0) % 41) - 20;
          }
          const fast = encodeWithCoins(plan, values, noise, coins(seed));
          const ref = encodeReference(plan, values, noise, coins(seed));
          expect(Buffer.from(words32(fast).buffer).equals(Buffer.from(words32(ref).buffer))).to.equal(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  // The native kernel (where setup built it; `npm test` runs setup first, so here it is).
  (nativeKernel() ? it : it.skip)(
    'the native encoder equals the JavaScript loop bit for bit, given the AES-CTR coins it draws',
    () => {
      const aesCoins = (key: Uint8Array) => {
        const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
        return (buf: Uint32Array) => {
          const ks = c.update(Buffer.alloc(buf.byteLength));
          new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength).set(ks);
        };
      };
      fc.assert(
        fc.property(
          fc.constantFrom(32 as const, 64 as const),
          fc.oneof(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 4000, max: 40000 })),
          fc.boolean(),
          fc.boolean(),
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
          fc.constantFrom(1, 3.5, 2 ** 20),
          (bits, d, f32, withNoise, key, scale) => {
            const enc = planEncoding({ clipNorm: 1, scale, workers: 2, dimension: d, bits: 64 });
            const plan = { ...enc, bits };
            const values = f32 ? new Float32Array(d) : new Float64Array(d);
            const noise = withNoise ? new Float64Array(d) : undefined;
            let x = key[0]! | (key[1]! << 8) | 1;
            for (let i = 0; i < d; i++) {
              x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x297a2d39;
              values[i] = (((x >>> 0) % 2001) - 1000) / (1001 * Math.sqrt(d)); // ‖x‖₂ < 1
              if (noise) noise[i] = ((x >>> 0) % 41) - 20;
            }
            const native = encodeNative(plan, values, noise, key);
            const ref = encodeWithCoins(plan, values, noise, aesCoins(key));
            expect(Buffer.from(words32(native).buffer).equals(Buffer.from(words32(ref).buffer))).to.equal(
              true,
            );
          },
        ),
        { numRuns: 60 },
      );
      const enc = planEncoding({ clipNorm: 1, scale: 2 ** 10, workers: 2, dimension: 2, bits: 64 });
      const key = new Uint8Array(16);
      expect(() => encodeNative(enc, new Float32Array([1, 1]), undefined, key)).to.throw(
        MalformedMessageError,
        'exceeds the clip norm 1',
      );
      expect(() => encodeNative(enc, new Float64Array([0, NaN]), undefined, key)).to.throw(
        'value 1 is not finite (NaN)',
      );
      expect(() => encodeNative(enc, new Float32Array([0]), undefined, key)).to.throw(
        'expected a vector of length 2, got 1',
      );
      expect(() => encodeNative(enc, new Float32Array(2), new Float64Array(1), key)).to.throw(
        'expected noise of length 2, got 1',
      );
    },
  );

  it('randomized rounding is unbiased and stays within one unit', () => {
    const enc = planEncoding({ clipNorm: 1000, scale: 1, workers: 1, dimension: 20000 });
    const x = new Float64Array(20000).fill(0.3);
    x[0] = -2.75;
    const v = toIntegers(encode(enc, x));
    expect(v[0]).to.be.oneOf([-3, -2]);
    const mean = v.slice(1).reduce((s, a) => s + a, 0) / 19999;
    expect(mean).to.be.closeTo(0.3, 0.02); // sd of the mean ≈ 0.0032
    for (const a of v.slice(1)) expect(a).to.be.oneOf([0, 1]);
  });

  it('decodes to real units and refuses unclipped or malformed input', () => {
    const enc = planEncoding({ clipNorm: 1, scale: 2 ** 10, workers: 2, dimension: 2, bits: 64 });
    const s = allocRing(64, 2);
    addInto(s, encode(enc, [0.5, -0.25]));
    addInto(s, encode(enc, [-0.125, -0.5]));
    expect(Array.from(decode(enc, s))).to.deep.equal([0.375, -0.75]);
    expect(() => encode(enc, [1, 1])).to.throw(MalformedMessageError, 'exceeds the clip norm 1');
    expect(() => encode(enc, [NaN, 0])).to.throw('value 0 is not finite (NaN)');
    expect(() => encode(enc, [0])).to.throw('expected a vector of length 2, got 1');
  });

  it('adds integer noise before reduction', () => {
    const enc = planEncoding({ clipNorm: 1, scale: 4, workers: 1, dimension: 3, noiseStd: 10 });
    expect(Array.from(toIntegers(encode(enc, [0.5, 0, -0.25], [5, -7, 0])))).to.deep.equal([7, -7, -1]);
  });
});
