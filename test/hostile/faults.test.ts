// Hostile input and faults (issue 18): each row reproduces a probe and asserts the refusal or the
// clean failure, and that nothing already saved was lost. Disk-full rows use a real, small tmpfs
// (we run as root in CI); data rows run the real worker program, which loads its shard before it
// dials the aggregator, so no coordinator is needed for them; the corrupt-checkpoint row runs a
// real coordinator and workers.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  CheckpointError,
  PrivacyLedger,
  loadLatestCheckpoint,
  saveCheckpoint,
  tensor,
  type LedgerEntry,
} from '@tensorguard/worker';
import {
  address,
  killAll,
  startCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from '../worker/harness.js';

const FAST = { TENSORGUARD_STAGE_TIMEOUT_MS: '4000', TENSORGUARD_JOIN_GRACE_MS: '1500' };
const SECRET = 'Jane-Patient-Doe';
const FP = 'a'.repeat(64);

const entry = (round: number): LedgerEntry => ({
  round,
  samplingRate: 0.1,
  noiseMultiplier: 1,
  survivors: 2,
  shards: [0, 1],
  quorum: 2,
  configuredNoiseMultiplier: 1,
  time: new Date(0).toISOString(),
});

function contents(round: number, n = 2048) {
  return {
    manifest: {
      round,
      baseModelFingerprint: FP,
      model: { kind: 'mlp', trainable: ['w'], parameters: n },
      tensors: [{ name: 'w', shape: [n], dtype: 'F32' as const }],
      optimizer: { kind: 'sgd', step: round },
      dp: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        samplingRate: 0.1,
        epsilonBudget: null,
        accountant: 'rdp',
      },
      accountant: { events: [] },
      epsilon: 1,
    },
    model: { w: tensor(new Float32Array(n).fill(round), [n]) },
    optimizer: {},
  };
}

/** Fills the file system of `dir` until a write fails (ENOSPC); returns the filler's path. */
function fillDisk(dir: string, leaveBytes: number): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  try {
    const free = fs.statfsSync(dir).bavail * fs.statfsSync(dir).bsize;
    if (free > leaveBytes) fs.writeSync(fd, Buffer.alloc(free - leaveBytes));
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

/** The worker's exit code and everything it printed, for a worker started without a coordinator. */
async function workerRefusal(config: string, index: number): Promise<{ code: number | null; text: string }> {
  const w = startWorker(config, index, '127.0.0.1:9');
  const timer = setTimeout(() => killAll([w]), 60_000);
  const code = await w.exited;
  clearTimeout(timer);
  return { code, text: JSON.stringify(w.lines) + w.stderr.join('') };
}

describe('hostile: faults and bad data', function () {
  this.timeout(240_000);
  let dir: string;
  let tmpfs: string;
  const procs: Proc[] = [];
  before(() => {
    dir = tmpDir('tg-hostile-');
    tmpfs = path.join(dir, 'small');
    fs.mkdirSync(tmpfs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=200k', 'tmpfs', tmpfs]);
  });
  after(() => {
    killAll(procs);
    execFileSync('umount', [tmpfs]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('disk full', () => {
    afterEach(() => {
      for (const f of fs.readdirSync(tmpfs)) fs.rmSync(path.join(tmpfs, f), { recursive: true, force: true });
    });

    it('during a ledger append: the append throws naming the path (no release), and the torn line is counted on resume', () => {
      const file = path.join(tmpfs, 'privacy-ledger.jsonl');
      const ledger = new PrivacyLedger(file, entry);
      ledger.append(entry(1));
      ledger.append(entry(2));
      const released = 2;
      fillDisk(tmpfs, 0);
      let err: unknown;
      try {
        for (let r = 3; r < 1000; r++) ledger.append({ ...entry(r), time: 'x'.repeat(2000) });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(CheckpointError);
      expect((err as Error).message).to.include(`${file}: `);
      const counted = new PrivacyLedger(file, entry).read();
      expect(counted.length).to.be.at.least(released);
      expect(counted.map((e) => e.round).slice(0, 2)).to.deep.equal([1, 2]);
    });

    it('during a checkpoint: names the path, removes its temporaries, keeps the last good checkpoint and LATEST', () => {
      const ck = path.join(tmpfs, 'ckpt');
      saveCheckpoint(ck, contents(1));
      const latestBefore = fs.readFileSync(path.join(ck, 'LATEST'), 'utf8');
      fillDisk(tmpfs, 4096);
      expect(() => saveCheckpoint(ck, contents(2, 40_000))).to.throw(
        CheckpointError,
        /ckpt\/\.tmp-round-000002.*cannot write/,
      );
      expect(fs.readdirSync(ck).filter((f) => f.startsWith('.tmp-'))).to.deep.equal([]);
      expect(fs.readFileSync(path.join(ck, 'LATEST'), 'utf8')).to.equal(latestBefore);
      expect(loadLatestCheckpoint(ck, { baseModelFingerprint: FP })!.manifest.round).to.equal(1);
    });
  });

  describe('bad data never "succeeds"', () => {
    const csvConfig = (dataset: Record<string, unknown>) =>
      writeConfig(dir, { workers: { count: 2 }, dataset: { format: 'csv', numClasses: 2, ...dataset } });
    const rows: [string, () => { config: string; index: number; names: string; absent?: string }][] = [
      [
        'an empty (header-only) CSV',
        () => {
          const f = path.join(dir, 'empty.csv');
          fs.writeFileSync(f, 'a,b,label\n');
          return {
            config: csvConfig({ path: f, sharding: 'contiguous' }),
            index: 0,
            names: `${f}: worker 0 of 2 has 0 records`,
          };
        },
      ],
      [
        "an unreadable file under 'files' sharding",
        () => {
          const d = fs.mkdtempSync(path.join(dir, 'files-'));
          fs.writeFileSync(path.join(d, 'a.csv'), 'a,label\n1,0\n');
          // Root reads a 0000 file, so the unreadable file is a directory named like a data file.
          fs.mkdirSync(path.join(d, 'b.csv'));
          return {
            config: csvConfig({ path: d, sharding: 'files' }),
            index: 1,
            names: `${path.join(d, 'b.csv')}: is a directory`,
          };
        },
      ],
      [
        'a FIFO as the dataset (refused by stat, never opened)',
        () => {
          const f = path.join(dir, 'pipe.csv');
          execFileSync('mkfifo', [f]);
          return {
            config: csvConfig({ path: f, sharding: 'contiguous' }),
            index: 0,
            names: `${f}: is a FIFO`,
          };
        },
      ],
      [
        'a secret cell value is never in the message; the line is',
        () => {
          const f = path.join(dir, 'secret.csv');
          fs.writeFileSync(f, `a,label\n1,0\n2,1\n${SECRET},1\n`);
          return {
            config: csvConfig({ path: f, sharding: 'contiguous' }),
            index: 0,
            names: `${f}:4: column 1 is not a finite number`,
            absent: SECRET,
          };
        },
      ],
      [
        'a test set sharing records with the training set (held-out metrics would not be held out)',
        () => {
          const train = path.join(dir, 'overlap-train.csv');
          const test = path.join(dir, 'overlap-test.csv');
          const records = Array.from({ length: 40 }, (_, i) => `${i / 40},${(i * 7) % 11},${i % 2}`);
          fs.writeFileSync(train, ['a,b,label', ...records].join('\n') + '\n');
          // Three training records copied into an otherwise fresh test set (one a secret).
          fs.writeFileSync(
            test,
            ['a,b,label', records[3], records[17], records[29], '5,5,1', '6,6,0'].join('\n') + '\n',
          );
          return {
            config: csvConfig({ path: train, testPath: test, sharding: 'contiguous' }),
            index: 0,
            names: `dataset.testPath: 2 of this worker's 20 training records also appear in the test set`,
            absent: records[17],
          };
        },
      ],
    ];
    for (const [name, make] of rows) {
      it(name, async () => {
        const row = make();
        const { code, text } = await workerRefusal(row.config, row.index);
        expect(code).to.not.equal(0);
        expect(text).to.include(row.names);
        if (row.absent) expect(text).not.to.include(row.absent);
      });
    }
  });

  it('a non-finite update stops the job before anything non-finite is checkpointed', async () => {
    const ck = path.join(dir, 'ck-nonfinite');
    const file = writeConfig(dir, {
      rounds: 2,
      workers: { count: 2 },
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 100, testExamples: 100 },
      optimizer: { kind: 'sgd', learningRate: 1e300 },
      checkpoint: { dir: ck, everyRounds: 1 },
    });
    const coord = startCoordinator(file, FAST);
    procs.push(coord);
    const addr = await address(coord);
    procs.push(startWorker(file, 0, addr), startWorker(file, 1, addr));
    const done = await coord.waitFor((l) => l.type === 'done', 180_000);
    expect(done.status).to.equal('failed');
    expect(done.error as string).to.match(/round 1: the update made the model parameters non-finite/);
    expect(await coord.exited).to.equal(1);
    expect(fs.existsSync(path.join(ck, 'LATEST'))).to.equal(false);
    killAll(procs.splice(0));
  });

  it('a corrupt latest checkpoint: resumes from the previous intact one, saying so; the ledger still counts every released round', async () => {
    const file = writeConfig(dir, {
      rounds: 2,
      workers: { count: 2 },
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 100, testExamples: 100 },
      checkpoint: { dir: path.join(dir, 'ck-corrupt'), everyRounds: 1 },
    });
    const run = async (cfg: string) => {
      const coord = startCoordinator(cfg, FAST);
      procs.push(coord);
      const addr = await address(coord);
      procs.push(startWorker(cfg, 0, addr), startWorker(cfg, 1, addr));
      const done = await coord.waitFor((l) => l.type === 'done', 180_000);
      return { coord, done };
    };
    const first = await run(file);
    expect(first.done.status).to.equal('succeeded');
    killAll(procs.splice(0));
    const ck = path.join(dir, 'ck-corrupt');
    const latest = fs.readFileSync(path.join(ck, 'LATEST'), 'utf8').trim();
    const f = path.join(ck, latest, 'model.safetensors');
    const b = fs.readFileSync(f);
    b[b.length - 5] = b[b.length - 5]! ^ 0x40;
    fs.writeFileSync(f, b);
    const ledger = path.join(ck, 'privacy-ledger.jsonl');
    const releasedBefore = new PrivacyLedger(ledger).read().length;
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const more = path.join(dir, 'more.json');
    fs.writeFileSync(more, JSON.stringify({ ...cfg, rounds: 3 }));
    const second = await run(more);
    expect(second.done.status).to.equal('succeeded');
    const logs = JSON.stringify(second.coord.lines) + second.coord.stderr.join('');
    expect(logs).to.match(/is unusable .*resuming from the previous intact checkpoint/);
    const counted = new PrivacyLedger(ledger).read().length;
    expect(counted).to.be.at.least(releasedBefore);
    expect(fs.statSync(ledger).mode & 0o777).to.equal(0o600);
    expect(fs.statSync(ck).mode & 0o777).to.equal(0o700);
    killAll(procs.splice(0));
  });
});
