import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { appendLineDurable } from '../checkpoint/atomic.js';
import { CheckpointError } from '../checkpoint/errors.js';
import { jobFingerprint, PrivacyLedger, type LedgerEntry } from './ledger.js';

const entry = (round: number, shards = [0]): LedgerEntry => ({
  round,
  samplingRate: 0.1,
  noiseMultiplier: 1,
  survivors: 2,
  shards,
  quorum: 2,
  configuredNoiseMultiplier: 1,
  time: 't',
});

describe('coordinator/ledger', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('counts a torn last line as the next round, charged conservatively, and keeps it on repair', () => {
    const file = path.join(dir, 'privacy-ledger.jsonl');
    const worst = (round: number) => entry(round, [0, 1]);
    const l = new PrivacyLedger(file, worst);
    l.append(entry(1));
    l.append(entry(2));
    fs.appendFileSync(file, '{"rou');
    const got = l.read();
    expect(got.map((e) => e.round)).to.deep.equal([1, 2, 3]);
    expect(got[2]!.shards).to.deep.equal([0, 1]);
    expect(got[2]!.torn).to.equal(true);
    l.repair();
    expect(fs.readFileSync(file, 'utf8').endsWith('\n')).to.equal(true);
    l.append(entry(4));
    expect(new PrivacyLedger(file, worst).read().map((e) => e.round)).to.deep.equal([1, 2, 3, 4]);
  });

  it('a torn first line follows the checkpoint round; without a worst case it is an error, never dropped', () => {
    const file = path.join(dir, 'privacy-ledger.jsonl');
    fs.writeFileSync(file, '{"round":');
    expect(new PrivacyLedger(file, (r) => entry(r), 7).read().map((e) => e.round)).to.deep.equal([8]);
    expect(() => new PrivacyLedger(file).read()).to.throw(CheckpointError, 'damaged privacy ledger entry');
  });

  it('writes the ledger 0600 and names the path when the append cannot be written', () => {
    const file = path.join(dir, 'privacy-ledger.jsonl');
    new PrivacyLedger(file).append(entry(1));
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    const missing = path.join(dir, 'gone', 'privacy-ledger.jsonl');
    expect(() => appendLineDurable(missing, '{}')).to.throw(CheckpointError, `${missing}: cannot write`);
  });

  it('starts with the job fingerprint and refuses a resume with another workers.count, sharding or dataset', () => {
    const file = path.join(dir, 'privacy-ledger.jsonl');
    const cfg = (count: number, dataset: Record<string, unknown>) => ({ workers: { count }, dataset });
    const base = { format: 'idx', preset: 'fashion-mnist', sharding: 'hash', trainExamples: 300 };
    const l = new PrivacyLedger(file, (r) => entry(r), 0, jobFingerprint(cfg(3, base)));
    l.append(entry(1));
    l.append(entry(2));
    // The header is the first line; readers see entries only, and a repair keeps it.
    expect(JSON.parse(fs.readFileSync(file, 'utf8').split('\n')[0]!).type).to.equal('header');
    expect(l.read().map((e) => e.round)).to.deep.equal([1, 2]);
    fs.appendFileSync(file, '{"rou');
    l.repair();
    expect(JSON.parse(fs.readFileSync(file, 'utf8').split('\n')[0]!).type).to.equal('header');

    const resume = (c: ReturnType<typeof cfg>) => () =>
      new PrivacyLedger(file, (r) => entry(r), 0, jobFingerprint(c)).checkFingerprint();
    // Key order does not matter; the same partition resumes.
    expect(
      resume(cfg(3, { trainExamples: 300, sharding: 'hash', preset: 'fashion-mnist', format: 'idx' })),
    ).to.not.throw();
    expect(resume(cfg(4, base))).to.throw(
      CheckpointError,
      `${file}: cannot resume: workers.count changed from 3 to 4 since this job's privacy ledger was started`,
    );
    expect(resume(cfg(3, { ...base, sharding: 'contiguous' }))).to.throw(
      CheckpointError,
      "dataset.sharding changed from 'hash' to 'contiguous'",
    );
    expect(resume(cfg(3, { ...base, trainExamples: 301 }))).to.throw(
      CheckpointError,
      'the dataset block (path, preset, sizes or shard key) changed',
    );
    expect(resume(cfg(3, { ...base, shardKey: 'other' }))).to.throw(CheckpointError, 'the dataset block');
    // A ledger of an older version (no header) is still read and resumed.
    const old = path.join(dir, 'old.jsonl');
    new PrivacyLedger(old).append(entry(1));
    expect(() =>
      new PrivacyLedger(old, undefined, 0, jobFingerprint(cfg(5, base))).checkFingerprint(),
    ).to.not.throw();
    expect(new PrivacyLedger(old).read()).to.have.length(1);
  });
});
