import { expect } from 'chai';
import { encode, planEncoding, runRoundInProcess, decode, newSessionId } from '@tensorguard/secure-agg';
import { integerNoiseShare, shareStdInteger } from './noise.js';

function variance(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m += v[i]!;
  m /= v.length;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i]! - m) ** 2;
  return s / (v.length - 1);
}

describe('noise shares', () => {
  const sigma = 1.3;
  const C = 0.7;
  const scale = 2 ** 10;
  const d = 40_000;
  const t = 2;
  const n = 3;
  // Δ = C + √d / scale: the clip norm inflated by randomized rounding.
  const delta = C + Math.sqrt(d) / scale;
  const std = shareStdInteger(sigma, delta, scale, t);

  // The realised noise of a securely aggregated sum of zero vectors, through the real protocol.
  function realisedVariance(dropped: number[]): number {
    const enc = planEncoding({
      clipNorm: C,
      scale,
      workers: n,
      dimension: d,
      noiseStd: (std / scale) * Math.sqrt(n),
    });
    const inputs = Array.from({ length: n }, () =>
      encode(enc, new Float32Array(d), integerNoiseShare(d, std)),
    );
    const report = runRoundInProcess({
      params: {
        sessionId: newSessionId(),
        round: 1,
        members: ['a', 'b', 'c'],
        vectorLength: d,
        bits: enc.bits,
        threshold: 2,
        degree: 2,
        graphSeed: new Uint8Array(16),
        minInputs: t,
      },
      inputs,
      dropBefore: new Map(dropped.map((i) => [i, 'MASKED_INPUT' as const])),
    });
    expect(report.error).to.equal(undefined);
    return variance(decode(enc, report.result!.sum));
  }

  it('a quorum of t contributors carries variance σ²Δ² (statistical, ±4%)', () => {
    // d = 40000 samples: the relative s.e. of a sample variance is √(2/d) ≈ 0.7%.
    const v = realisedVariance([2]);
    expect(v / (sigma * delta) ** 2).to.be.within(0.96, 1.04);
  });
  it('all n contributors carry n/t · σ²Δ², the realised multiplier the accountant records', () => {
    const v = realisedVariance([]);
    expect(v / ((n / t) * (sigma * delta) ** 2)).to.be.within(0.96, 1.04);
  });
  it('is integer-valued and centred', () => {
    const z = integerNoiseShare(10_001, 5);
    expect(z.every((x) => Number.isInteger(x))).to.equal(true);
    expect(Math.abs(z.reduce((a, b) => a + b, 0) / z.length)).to.be.below(0.3);
  });
});
