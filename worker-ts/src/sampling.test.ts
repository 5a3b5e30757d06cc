import { expect } from 'chai';
import { poissonSample, realisedRate, seededRandom } from './sampling.js';

describe('sampling', () => {
  it('takes every record at q = 1 and none at q = 0', () => {
    expect(poissonSample(5, 1).length).to.equal(5);
    expect(poissonSample(5, 0).length).to.equal(0);
  });
  it('has binomial batch sizes (mean nq, variance nq(1-q))', () => {
    const n = 1000;
    const q = 0.1;
    const sizes: number[] = [];
    for (let i = 0; i < 400; i++) sizes.push(poissonSample(n, q).length);
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    const v = sizes.reduce((a, b) => a + (b - mean) ** 2, 0) / (sizes.length - 1);
    expect(mean).to.be.closeTo(n * q, 5 * Math.sqrt((n * q * (1 - q)) / sizes.length));
    expect(v).to.be.within(0.7 * n * q * (1 - q), 1.3 * n * q * (1 - q));
  });
  it('is reproducible with a seeded stream', () => {
    expect(Array.from(poissonSample(100, 0.3, seededRandom('s')))).to.deep.equal(
      Array.from(poissonSample(100, 0.3, seededRandom('s'))),
    );
  });
  it('never selects with a probability above q: the threshold is floor(q · 2^32), not rounded up', () => {
    // q · 2^32 = 1000.75: the word 1000 is the first one above the rate and must not select.
    const q = 1000.75 / 2 ** 32;
    const words = (value: number) => (bytes: number) => {
      const out = new Uint8Array(bytes);
      const view = new DataView(out.buffer);
      for (let i = 0; i < bytes; i += 4) view.setUint32(i, value, true);
      return out;
    };
    expect(poissonSample(4, q, words(1000)).length).to.equal(0);
    expect(poissonSample(4, q, words(999)).length).to.equal(4);
    for (const r of [q, 0.1, 1 / 3, 0.7, 2 ** -33, 1 - 2 ** -40]) {
      expect(realisedRate(r)).to.be.at.most(r);
      expect(r - realisedRate(r)).to.be.below(2 ** -32);
    }
  });
  it('rejects a bad rate', () => {
    expect(() => poissonSample(3, 1.5)).to.throw('sampling rate must be in [0, 1], got 1.5');
  });
});
