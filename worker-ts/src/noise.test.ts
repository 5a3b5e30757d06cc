import { expect } from 'chai';
import { encode, planEncoding, runRoundInProcess, decode, newSessionId } from '@tensorguard/secure-agg';
import { NoiseShares, integerNoiseShare, shareStdInteger } from './noise.js';

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

describe('NoiseShares (the next round drawn ahead)', () => {
  const turn = () => new Promise<void>((r) => setImmediate(r));
  const idle = async (turns: number) => {
    for (let i = 0; i < turns; i++) await turn();
  };

  it('a prefetched share is handed out once: fresh buffers, integer-valued, the asked variance', async () => {
    const shares = new NoiseShares();
    const std = 40;
    const first = shares.take(50_000, std);
    shares.prefetch(50_000, std);
    await idle(40); // 25 chunks of 2048 fill it
    const second = shares.take(50_000, std);
    shares.prefetch(50_000, std);
    const third = shares.take(50_000, std); // taken before the prefetch ran: finished at once
    shares.dispose();
    expect(shares.counts).to.deep.equal({ prefetched: 2, drawn: 1, discarded: 0 });
    expect(second).to.not.equal(first);
    expect(third).to.not.equal(second);
    for (const z of [second, third]) {
      expect(z.length).to.equal(50_000);
      expect(z.every((x) => Number.isInteger(x))).to.equal(true);
      // s.e. of a sample variance over 50k draws ≈ 0.6 %.
      expect(variance(z) / std ** 2).to.be.within(0.97, 1.03);
    }
    let same = 0;
    for (let i = 0; i < 50_000; i++) if (second[i] === third[i]) same++;
    // Independent draws agree on ~1/(2√π σ) ≈ 0.7 % of coordinates, not on all of them.
    expect(same).to.be.below(1000);
  });

  it('a prefetch for another (d, std) is zeroed and dropped; the round gets a fresh share', async () => {
    const shares = new NoiseShares();
    shares.prefetch(4096, 7);
    await idle(5);
    const z = shares.take(4096, 9);
    expect(shares.counts).to.deep.equal({ prefetched: 0, drawn: 1, discarded: 1 });
    expect(variance(z) / 81).to.be.within(0.85, 1.15);
    shares.prefetch(10, 0); // std 0: nothing to draw ahead
    expect(Array.from(shares.take(10, 0))).to.deep.equal(new Array(10).fill(0));
    expect(() => shares.take(10, 2 ** 21)).to.throw(RangeError, /outside/);
  });

  it('draws one chunk per event-loop turn, so the worker keeps serving gRPC while it prefetches', async () => {
    const shares = new NoiseShares();
    shares.prefetch(400_000, 1000);
    expect(shares.prefetchedSamples).to.equal(0);
    await turn();
    expect(shares.prefetchedSamples).to.equal(2048);
    await turn();
    await turn();
    expect(shares.prefetchedSamples).to.equal(3 * 2048);
    shares.dispose();
    expect(shares.prefetchedSamples).to.equal(0);
  });
});
