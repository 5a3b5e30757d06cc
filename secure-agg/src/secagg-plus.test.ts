import { expect } from 'chai';
import fc from 'fast-check';
import { chooseSecAggPlusParams, log2BinomBelow, neighbourGraph } from './secagg-plus.js';

describe('secagg-plus', () => {
  it('builds a symmetric k-regular graph, the same from the same seed', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 5, max: 200 }),
        fc.integer({ min: 1, max: 10 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (n, half, seed) => {
          const k = Math.min(2 * half, n - 2 - ((n - 2) % 2));
          if (k < 2) return;
          const g = neighbourGraph(n, k, seed);
          expect(neighbourGraph(n, k, seed)).to.deep.equal(g);
          g.forEach((ns, u) => {
            expect(ns).to.have.length(k);
            expect(ns).not.to.include(u);
            for (const v of ns) expect(g[v]).to.include(u);
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('uses the complete graph when degree reaches n - 1', () => {
    expect(neighbourGraph(4, 3, new Uint8Array(32))).to.deep.equal([
      [1, 2, 3],
      [0, 2, 3],
      [0, 1, 3],
      [0, 1, 2],
    ]);
  });

  it('picks k = O(log n) meeting the stated bounds', () => {
    const rows = [100, 1000, 10000, 100000].map((n) => ({
      n,
      ...chooseSecAggPlusParams({ workers: n, dropoutRate: 0.1 }),
    }));
    for (const r of rows) {
      expect(r.log2FailureBound).to.be.at.most(-20);
      expect(r.log2SecurityBound).to.be.at.most(-40);
      expect(2 * r.threshold).to.be.above(r.degree + 1);
    }
    // Degrees grow logarithmically: ×1000 workers costs far less than ×10 neighbours.
    expect(rows[3]!.degree).to.be.below(3 * rows[0]!.degree);
    expect(rows[1]!.complete).to.equal(false);
  });

  it('falls back to the complete graph for few workers and refuses impossible settings', () => {
    expect(chooseSecAggPlusParams({ workers: 8, dropoutRate: 0.05, correctnessBits: 5 }).complete).to.equal(
      true,
    );
    expect(() => chooseSecAggPlusParams({ workers: 5, dropoutRate: 0.4 })).to.throw('5 workers cannot meet');
    expect(() => chooseSecAggPlusParams({ workers: 5, dropoutRate: 0.7 })).to.throw(
      'dropoutRate: must be in [0, 0.5), got 0.7',
    );
  });

  it('binomial tails match direct sums', () => {
    // P[Bin(4, 0.5) < 2] = (1 + 4) / 16
    expect(2 ** log2BinomBelow(4, 0.5, 2)).to.be.closeTo(5 / 16, 1e-12);
  });
});
