import { expect } from 'chai';
import fc from 'fast-check';
import { selectRecords, type Dataset } from './dataset.js';
import { hashShards, shardRange } from './shard.js';

function dataset(n: number, seed: number): Dataset {
  const len = 6;
  const features = new Float32Array(n * len);
  let x = seed >>> 0;
  for (let i = 0; i < features.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    features[i] = x / 2 ** 32;
  }
  return {
    size: n,
    featureShape: [2, 3],
    dtype: 'float32',
    features,
    labels: Int32Array.from({ length: n }, (_, i) => i % 4),
    numClasses: 4,
    source: 'test',
  };
}

/** Each record's shard, keyed by the record's bytes (records are distinct here). */
function assignment(ds: Dataset, shards: Int32Array): Map<string, number> {
  const len = 6;
  const out = new Map<string, number>();
  for (let i = 0; i < ds.size; i++)
    out.set(
      `${Array.from(ds.features.subarray(i * len, (i + 1) * len)).join(',')}|${ds.labels[i]}`,
      shards[i]!,
    );
  return out;
}

function without(ds: Dataset, k: number): Dataset {
  return selectRecords(
    ds,
    Int32Array.from({ length: ds.size - 1 }, (_, i) => (i < k ? i : i + 1)),
  );
}

describe("data/shard: 'hash' sharding is stable under adding or removing one record", () => {
  it('removing any one record changes no other record’s shard (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 300 }),
        fc.integer({ min: 1, max: 8 }),
        fc.nat(),
        fc.nat(),
        (n, workers, seed, pick) => {
          const ds = dataset(n, seed);
          const k = pick % n;
          const before = assignment(ds, hashShards(ds, workers, 'job'));
          const smaller = without(ds, k);
          const after = assignment(smaller, hashShards(smaller, workers, 'job'));
          for (const [record, shard] of after) expect(before.get(record)).to.equal(shard);
          expect(after.size).to.equal(n - 1);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('spreads records over every worker, and another key gives another assignment', () => {
    const ds = dataset(3000, 7);
    const a = hashShards(ds, 4, 'job-a');
    const counts = [0, 0, 0, 0];
    for (const s of a) counts[s]!++;
    for (const c of counts) expect(c).to.be.within(650, 850);
    const b = hashShards(ds, 4, 'job-b');
    expect(a.some((s, i) => s !== b[i])).to.equal(true);
  });

  it("'contiguous' ranges are not: removing one record moves others across a boundary (why every round is charged to every shard there)", () => {
    const shardOf = (n: number, workers: number) =>
      Array.from({ length: n }, (_, r) => {
        for (let w = 0; w < workers; w++) {
          const { start, end } = shardRange(n, workers, w);
          if (r >= start && r < end) return w;
        }
        return -1;
      });
    const before = shardOf(9, 3); // records 0..8: [0, 3) [3, 6) [6, 9)
    const after = shardOf(8, 3); // records 1..8, renumbered 0..7: old record 3 moves to shard 0
    const moved = after.filter((w, i) => before[i + 1] !== w).length;
    expect(moved).to.be.above(0);
  });
});
