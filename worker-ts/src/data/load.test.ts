import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { ConfigError, parseRunConfig } from '../config.js';
import { DatasetError } from './errors.js';
import { loadShard, loadTrainSchema, requireRegularFile } from './load.js';
import { execFileSync } from 'node:child_process';

function config(dataset: Record<string, unknown>, workers = 2): Record<string, unknown> {
  return {
    name: 't',
    model: { kind: 'mlp' },
    dataset,
    workers: { count: workers },
    privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.1 },
    secureAggregation: { mode: 'masking', threshold: 1 },
    optimizer: { kind: 'sgd', learningRate: 0.1 },
    rounds: 1,
    evaluation: { everyRounds: 1 },
    checkpoint: { dir: '/tmp/x', everyRounds: 1 },
    envelope: { maxTrainableParameters: 1e6, maxUpdateBytes: 1e9 },
    roundTimeoutMs: 1000,
  };
}

describe('data/load: sharding', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-files-'));
    // part-0..4: file k holds records whose first feature is 10k, 10k+1.
    for (let k = 0; k < 5; k++) {
      fs.writeFileSync(
        path.join(dir, `part-${k}.csv`),
        `x,y,label\n${10 * k},0,${k % 3}\n${10 * k + 1},0,1\n`,
      );
    }
    fs.writeFileSync(path.join(dir, 'README.txt'), 'not data');
  });

  it("'files': worker i reads only files i mod N, in name order", () => {
    const cfg = parseRunConfig(config({ format: 'csv', path: dir, sharding: 'files', numClasses: 3 }));
    const firstFeature = (ds: { features: ArrayLike<number>; size: number }) =>
      Array.from({ length: ds.size }, (_, i) => ds.features[2 * i]);
    const w0 = loadShard(cfg, 0);
    const w1 = loadShard(cfg, 1);
    expect(firstFeature(w0)).to.deep.equal([0, 1, 20, 21, 40, 41]);
    expect(firstFeature(w1)).to.deep.equal([10, 11, 30, 31]);
    expect(w0.numClasses).to.equal(3);
    expect(loadTrainSchema(cfg)).to.deep.include({ featureShape: [2], numClasses: 3 });
  });

  it("'files': a damaged file fails only the worker that owns it, naming the file", () => {
    const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-files-'));
    fs.writeFileSync(path.join(bad, 'a.csv'), 'x,label\n1,0\n');
    fs.writeFileSync(path.join(bad, 'b.csv'), 'x,label\n1,0\n2\n');
    const cfg = parseRunConfig(config({ format: 'csv', path: bad, sharding: 'files', numClasses: 2 }));
    expect(loadShard(cfg, 0).size).to.equal(1);
    expect(() => loadShard(cfg, 1)).to.throw(DatasetError, `${path.join(bad, 'b.csv')}:3`);
    const three = parseRunConfig(config({ format: 'csv', path: bad, sharding: 'files', numClasses: 2 }, 3));
    expect(() => loadShard(three, 2)).to.throw(DatasetError, 'worker 2 of 3 gets no file');
  });

  it("'hash' is the default; 'range' is an alias of 'contiguous'", () => {
    const a = parseRunConfig(config({ format: 'idx', preset: 'fashion-mnist' }));
    const b = parseRunConfig(config({ format: 'idx', preset: 'fashion-mnist', sharding: 'range' }));
    expect(a.dataset.sharding).to.equal('hash');
    expect(b.dataset.sharding).to.equal('contiguous');
  });

  it("refuses 'files' where it cannot work, saying what to do", () => {
    const cases: [Record<string, unknown>, string][] = [
      [
        { format: 'idx', preset: 'fashion-mnist', sharding: 'files' },
        "config field 'dataset.sharding': 'files' needs format csv or jsonl with dataset.path a directory of such files; IDX is one file per split: use sharding 'hash'",
      ],
      [
        { format: 'csv', path: dir, sharding: 'files' },
        "config field 'dataset.numClasses': is required with sharding 'files'",
      ],
      [
        { format: 'csv', path: dir, sharding: 'files', numClasses: 3, trainExamples: 5 },
        "config field 'dataset.trainExamples': applies to sharding 'hash' and 'contiguous' only",
      ],
      [
        { format: 'csv', path: dir, sharding: 'rows' },
        'config field \'dataset.sharding\': must be one of hash, contiguous, files, got "rows"',
      ],
    ];
    for (const [dataset, message] of cases) {
      expect(() => parseRunConfig(config(dataset))).to.throw(ConfigError, message);
    }
  });
});

describe('data/load: loadTrainSchema reads metadata, never a record', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-schema-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('CSV: the header line only (records after it, even malformed, are not read)', () => {
    const file = path.join(dir, 'train.csv');
    fs.writeFileSync(file, 'a,b,c,label\nnot,a,record,at all,,,\n');
    const schema = loadTrainSchema(parseRunConfig(config({ format: 'csv', path: file, numClasses: 4 })));
    expect(schema).to.deep.equal({ featureShape: [3], numClasses: 4 });
    expect(() => loadTrainSchema(parseRunConfig(config({ format: 'csv', path: file })))).to.throw(
      DatasetError,
      'dataset.numClasses is required for csv data: the coordinator reads no training record, so it cannot count the classes',
    );
  });

  it('IDX: the images header only, gzipped or not; the preset needs no file at all', () => {
    // An IDX header claiming 1000 images of 5×7 followed by only 3 bytes: a record read would fail.
    const header = Buffer.from([0, 0, 0x08, 3, 0, 0, 0x03, 0xe8, 0, 0, 0, 5, 0, 0, 0, 7, 1, 2, 3]);
    for (const [name, bytes] of [
      ['plain', header],
      ['gz', zlib.gzipSync(header)],
    ] as const) {
      const d = path.join(dir, name);
      fs.mkdirSync(d);
      fs.writeFileSync(
        path.join(d, name === 'gz' ? 'train-images-idx3-ubyte.gz' : 'train-images-idx3-ubyte'),
        bytes,
      );
      const schema = loadTrainSchema(parseRunConfig(config({ format: 'idx', path: d, testPath: d })));
      expect(schema).to.deep.equal({ featureShape: [5, 7, 1], numClasses: 10 });
    }
    const preset = loadTrainSchema(parseRunConfig(config({ format: 'idx', preset: 'fashion-mnist' })));
    expect(preset).to.deep.equal({ featureShape: [28, 28, 1], numClasses: 10 });
  });
});

describe("data/load: 'hash' sharding", () => {
  it('the workers’ shards partition the training set, and each worker keeps only its own', () => {
    const cfg = () =>
      parseRunConfig(config({ format: 'idx', preset: 'fashion-mnist', trainExamples: 600 }, 3));
    const shards = [0, 1, 2].map((i) => loadShard(cfg(), i));
    expect(shards.reduce((a, s) => a + s.size, 0)).to.equal(600);
    for (const s of shards) expect(s.size).to.be.within(150, 250);
    // Disjoint: a record (its pixels) is in one shard only.
    const key = (s: (typeof shards)[number], i: number) =>
      s.features.subarray(i * 784, (i + 1) * 784).join(',');
    const seen = new Set<string>();
    let total = 0;
    for (const s of shards)
      for (let i = 0; i < s.size; i++) {
        seen.add(key(s, i));
        total++;
      }
    expect(seen.size).to.equal(total);
  });
});

describe('data/load: refusals before training', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-refuse-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses an empty shard (a header-only CSV), naming the file', () => {
    const f = path.join(dir, 'empty.csv');
    fs.writeFileSync(f, 'x,y,label\n');
    const cfg = parseRunConfig(config({ format: 'csv', path: f, sharding: 'contiguous', numClasses: 2 }, 2));
    expect(() => loadShard(cfg, 0)).to.throw(DatasetError, `${f}: worker 0 of 2 has 0 records in its shard`);
  });

  it('refuses a FIFO without opening it (an open would block), and a directory as a CSV file', () => {
    const fifo = path.join(dir, 'pipe.csv');
    execFileSync('mkfifo', [fifo]);
    const cfg = parseRunConfig(config({ format: 'csv', path: fifo, sharding: 'contiguous', numClasses: 2 }));
    expect(() => loadShard(cfg, 0)).to.throw(
      DatasetError,
      `${fifo}: is a FIFO; a dataset must be a regular file`,
    );
    expect(() => loadTrainSchema(cfg)).to.throw(DatasetError, `${fifo}: is a FIFO`);
    expect(() => requireRegularFile('/dev/null')).to.throw(DatasetError, '/dev/null: is a device');
  });

  it("'files': an unreadable file fails its worker, naming the file", () => {
    const d = fs.mkdtempSync(path.join(dir, 'files-'));
    fs.writeFileSync(path.join(d, 'a.csv'), 'x,label\n1,0\n');
    fs.mkdirSync(path.join(d, 'b.csv'));
    const cfg = parseRunConfig(config({ format: 'csv', path: d, sharding: 'files', numClasses: 2 }));
    expect(() => loadShard(cfg, 1)).to.throw(DatasetError, `${path.join(d, 'b.csv')}: is a directory`);
  });
});
