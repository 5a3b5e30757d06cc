import { expect } from 'chai';
import fc from 'fast-check';
import { ConfigError, MalformedMessageError } from './errors.js';
import { decode, encode, encodeIntegers, noiseTailBound, planEncoding, toIntegers } from './encoding.js';
import { addInto, allocRing } from './masking.js';

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
