import { expect } from 'chai';
import { createCipheriv, createHash } from 'node:crypto';
import { DiscreteGaussianSampler, exactVariance, sampleDiscreteGaussian } from './discrete-gaussian.js';
import { sampleGaussian } from './gaussian.js';
import { normalCdf } from './special-functions.js';
import { SecureRandom } from './random.js';

/**
 * A SecureRandom over a fixed AES-128-CTR keystream (key from `label`): the statistical tests below
 * draw a fixed sample, so each either passes or fails every run instead of failing at random one run
 * in a thousand (their level). The samplers run exactly as in production; only the bits are pinned.
 */
function pinned(label: string): SecureRandom {
  const key = createHash('sha256').update(`tensorguard samplers.test ${label}`).digest().subarray(0, 16);
  const ctr = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return new SecureRandom((buf) => {
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    bytes.set(ctr.update(new Uint8Array(bytes.length)));
  });
}

// Chi-square critical value at p = 0.001 via the Wilson–Hilferty approximation.
function chiSquareCritical(df: number): number {
  const z = 3.090232; // Φ^{-1}(0.999)
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

describe('SecureRandom', () => {
  it('exact Bernoulli(num/den) has the right mean, in the double and bigint paths', () => {
    const r = pinned('bernoulli');
    for (const [num, den] of [
      [1, 3],
      [2n ** 60n, 3n * 2n ** 60n],
    ] as const) {
      let hits = 0;
      const n = 60000;
      for (let i = 0; i < n; i++) if (r.bernoulli(num, den)) hits++;
      expect(Math.abs(hits / n - 1 / 3)).to.be.below(5 * Math.sqrt(((1 / 3) * (2 / 3)) / n));
    }
  });

  it('uniformInt is unbiased over a non-power-of-two range', () => {
    const r = pinned('uniformInt');
    const counts = new Array<number>(7).fill(0);
    const n = 70000;
    for (let i = 0; i < n; i++) counts[r.uniformInt(7)]!++;
    const chi = counts.reduce((s, c) => s + (c - n / 7) ** 2 / (n / 7), 0);
    expect(chi).to.be.below(chiSquareCritical(6));
  });
});

describe('discrete Gaussian (Canonne–Kamath–Steinke 2020)', () => {
  it('uses an exact rational variance, never below the requested σ²', () => {
    expect(exactVariance(10)).to.deep.equal({ numerator: 100, denominator: 1 });
    expect(exactVariance(0.5)).to.deep.equal({ numerator: 1, denominator: 4 });
    const v = exactVariance(Math.PI);
    expect(v.numerator / v.denominator).to.be.at.least(Math.PI * Math.PI);
  });

  it('never returns a variance below the exact square of the double σ, not even by 1e-12 relative', () => {
    // The double 1.1 is slightly above 11/10, so 121/100 (the old answer) was below its square.
    const exactSquareAtMost = (sigma: number, v: { numerator: number; denominator: number }): boolean => {
      let m = sigma;
      let e = 0n;
      while (!Number.isInteger(m)) {
        m *= 2;
        e++;
      }
      // (M / 2^e)² <= n / d  ⇔  M² · d <= n · 2^(2e)
      return BigInt(m) ** 2n * BigInt(v.denominator) <= BigInt(v.numerator) << (2n * e);
    };
    const rng = pinned('exact variance');
    const sigmas = [1.1, 0.1, 0.3, 2.2, 1e-3, 1234.5678, 1048575.9, Math.SQRT2, Math.E];
    for (let i = 0; i < 2000; i++) sigmas.push(2 ** ((rng.uint32() / 2 ** 32) * 40 - 20));
    for (const sigma of sigmas) {
      const v = exactVariance(sigma);
      expect(exactSquareAtMost(sigma, v), `σ = ${sigma}: ${v.numerator}/${v.denominator}`).to.equal(true);
      expect(Number.isSafeInteger(v.numerator) && Number.isSafeInteger(v.denominator)).to.equal(true);
      // At σ ≥ 1 (shares in integer units are far larger) the rounding up costs < 2^-16 relative.
      if (sigma >= 1) expect(v.numerator / v.denominator / (sigma * sigma)).to.be.below(1 + 2 ** -16 + 1e-12);
    }
  });

  for (const sigma of [1, 3.5, 10]) {
    it(`passes a chi-square goodness-of-fit test against N_Z(0, σ²), σ = ${sigma}`, () => {
      const n = 200_000;
      const x = sampleDiscreteGaussian(n, sigma, pinned(`discrete ${sigma}`));
      const v = exactVariance(sigma);
      const s2 = v.numerator / v.denominator;
      const range = Math.ceil(4 * sigma);
      let z = 0;
      for (let k = -60 * Math.ceil(sigma); k <= 60 * Math.ceil(sigma); k++)
        z += Math.exp((-k * k) / (2 * s2));
      const counts = new Map<number, number>();
      for (const a of x) {
        const key = Math.max(-range - 1, Math.min(range + 1, a));
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      let chi = 0;
      let tail = 0;
      for (let k = -range; k <= range; k++) {
        const p = Math.exp((-k * k) / (2 * s2)) / z;
        tail += p;
        chi += ((counts.get(k) ?? 0) - n * p) ** 2 / (n * p);
      }
      const pTail = (1 - tail) / 2;
      for (const k of [-range - 1, range + 1]) chi += ((counts.get(k) ?? 0) - n * pTail) ** 2 / (n * pTail);
      expect(chi).to.be.below(chiSquareCritical(2 * range + 2));
    });
  }

  it('is exact for large σ too (bigint path) and symmetric', () => {
    const s = new DiscreteGaussianSampler(30000, pinned('large'));
    const x = s.sampleBatch(20000);
    let m = 0;
    let v = 0;
    for (const a of x) {
      expect(Number.isInteger(a)).to.equal(true);
      m += a;
      v += a * a;
    }
    expect(Math.abs(m / x.length)).to.be.below(5 * (30000 / Math.sqrt(x.length)));
    expect(Math.sqrt(v / x.length) / 30000).to.be.closeTo(1, 0.03);
  });
});

describe('continuous Gaussian', () => {
  for (const secure of [true, false]) {
    it(`passes a Kolmogorov–Smirnov test (secure = ${secure})`, () => {
      const n = 100_000;
      const sigma = 3;
      const random = pinned(`gaussian ${secure}`);
      const x = Array.from(sampleGaussian(n, sigma, { secure, random })).sort((a, b) => a - b);
      let d = 0;
      for (let i = 0; i < n; i++) {
        const f = normalCdf(x[i]! / sigma);
        d = Math.max(d, Math.abs(f - i / n), Math.abs(f - (i + 1) / n));
      }
      // Critical value at p = 0.001: 1.949 / √n.
      expect(d).to.be.below(1.949 / Math.sqrt(n));
    });
  }
});
