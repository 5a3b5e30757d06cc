// δ ≤ 1/N where the driver cannot check it: a user's CSV without dataset.trainExamples. The
// coordinator learns N from the workers' shard sizes (public: docs/privacy.md) and fails the job
// before round 1 when δ > 1/N, unless privacy.allowDeltaAboveInverseN says so.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import {
  killAll,
  runJob,
  startCoordinator,
  startWorker,
  address,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

/** `rows` distinct records `a,b,label`, starting at `from` (train and test sets do not overlap). */
function csv(file: string, from: number, rows: number): string {
  const lines = ['a,b,label'];
  for (let i = from; i < from + rows; i++)
    lines.push(`${(i / 100).toFixed(2)},${((i * 7) % 13) / 13},${i % 2}`);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('worker + coordinator: δ against the records N known only at run time (csv)', function () {
  this.timeout(180_000);

  const job = (dir: string, privacy: Record<string, unknown>) =>
    writeConfig(dir, {
      workers: { count: 2 },
      rounds: 1,
      dataset: {
        format: 'csv',
        numClasses: 2,
        path: csv(path.join(dir, 'train.csv'), 0, 40),
        testPath: csv(path.join(dir, 'test.csv'), 1000, 10),
      },
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 0.05,
        epsilonBudget: null,
        accountant: 'rdp',
        samplingRate: 0.2,
        ...privacy,
      },
      evaluation: { everyRounds: 1 },
    });

  it('fails the job before round 1 when δ > 1/N, naming δ, N, 1/N and the override', async () => {
    const dir = tmpDir('tg-delta-n-');
    const config = job(dir, {});
    const procs: Proc[] = [];
    const coord = startCoordinator(config, { TENSORGUARD_JOIN_GRACE_MS: '500' });
    procs.push(coord);
    try {
      const addr = await address(coord);
      procs.push(...[0, 1].map((i) => startWorker(config, i, addr)));
      const done = await coord.waitFor((l) => l.type === 'done', 120_000);
      expect(done.status).to.equal('failed');
      expect(done.error).to.equal(
        "privacy.delta 0.05 is above 1/N = 0.0250 for N = 40 training records (the workers' shard sizes): at such a δ a mechanism may publish a record outright; lower privacy.delta (for example to 0.003) or set privacy.allowDeltaAboveInverseN: true",
      );
      // Nothing was released: no round in the ledger.
      const ledger = path.join(dir, 'ckpt', 'privacy-ledger.jsonl');
      const rounds = fs.existsSync(ledger)
        ? fs
            .readFileSync(ledger, 'utf8')
            .split('\n')
            .filter((l) => l.includes('"round"')).length
        : 0;
      expect(rounds).to.equal(0);
      expect(done.rounds ?? 0).to.equal(0);
    } finally {
      killAll(procs);
    }
  });

  it('runs when privacy.allowDeltaAboveInverseN is set, or when δ ≤ 1/N', async () => {
    for (const privacy of [{ allowDeltaAboveInverseN: true }, { delta: 0.02 }]) {
      const dir = tmpDir('tg-delta-n-ok-');
      const { done } = await runJob(job(dir, privacy), 2, { TENSORGUARD_JOIN_GRACE_MS: '500' });
      expect(done.status, JSON.stringify(privacy)).to.equal('succeeded');
      expect(done.rounds).to.equal(1);
    }
  });
});
