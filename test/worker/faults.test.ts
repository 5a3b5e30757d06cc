// Faults with real processes: a worker SIGKILLed mid-round, the coordinator killed between a
// round's release and its checkpoint, the coordinator stopped by SIGTERM, and bad inputs (corrupt checkpoint, wrong base model,
// truncated dataset) that must fail clearly without touching the previous checkpoint.
import { JobAccountant, PrivacyLedger } from '@tensorguard/worker';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import {
  address,
  freePort,
  killAll,
  snapshot,
  startCoordinator,
  startCrashingCoordinator,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';

const FAST = { TENSORGUARD_STAGE_TIMEOUT_MS: '4000', TENSORGUARD_JOIN_GRACE_MS: '1500' };

describe('worker + coordinator: faults', function () {
  this.timeout(300_000);
  const procs: Proc[] = [];
  afterEach(() => killAll(procs.splice(0)));

  it('a worker SIGKILLed mid-round: the round completes with the survivors at the smaller realised noise; the restarted worker rejoins', async () => {
    const dir = tmpDir('tg-kill-');
    // 10 rounds: after the kill the coordinator waits up to the join grace (1.5 s) at each round's
    // barrier for the missing worker, so the restarted one (a Node and TensorFlow start, ~2 s, more
    // on a loaded machine) has several windows to rejoin in; with 7 fast rounds it could miss them.
    const file = writeConfig(dir, {
      rounds: 10,
      roundTimeoutMs: 5000,
      privacy: {
        clipNorm: 1,
        noiseMultiplier: 1,
        delta: 1e-5,
        epsilonBudget: null,
        accountant: 'rdp',
        samplingRate: 0.3,
      },
    });
    const coord = startCoordinator(file, FAST);
    procs.push(coord);
    const addr = await address(coord);
    const ws = [0, 1, 2].map((i) => startWorker(file, i, addr));
    procs.push(...ws);
    await coord.waitFor((l) => l.type === 'metrics' && l.round === 2);
    // Round 3 opens right after round 2's metrics; the worker is inside it (keys or gradient).
    await new Promise((r) => setTimeout(r, 150));
    ws[2]!.child.kill('SIGKILL');
    const short = await coord.waitFor(
      (l) => l.type === 'metrics' && (l.workers_alive as number) === 2,
      60_000,
    );
    const restarted = startWorker(file, 2, addr);
    procs.push(restarted);
    const done = await coord.waitFor((l) => l.type === 'done', 180_000);
    expect(done.status).to.equal('succeeded');
    expect(done.rounds).to.equal(10);
    const metrics = coord.lines.filter((l) => l.type === 'metrics');
    const after = metrics.filter((m) => (m.round as number) > (short.round as number));
    expect(
      after.some((m) => m.workers_alive === 3),
      'the restarted worker took part in a later round',
    ).to.equal(true);
    expect(restarted.lines.filter((l) => l.type === 'metrics').length).to.be.above(0);
    expect(await restarted.exited).to.equal(0);

    const ledger = new PrivacyLedger(path.join(dir, 'ckpt/privacy-ledger.jsonl')).read();
    expect(ledger).to.have.length(10);
    const two = ledger.filter((e) => e.survivors === 2);
    const three = ledger.filter((e) => e.survivors === 3);
    expect(two.length).to.be.at.least(1);
    // t = 2: each worker adds σ²Δ²/2, so 2 survivors realise σ, 3 survivors σ·√1.5.
    for (const e of two) expect(e.noiseMultiplier).to.be.closeTo(1, 1e-12);
    // Per-shard accounting: a round charges only the shards whose sums it contains.
    for (const e of ledger) expect(e.shards).to.have.length(e.survivors);
    expect(two.some((e) => !e.shards!.includes(2))).to.equal(true);
    for (const e of three) expect(e.noiseMultiplier).to.be.closeTo(Math.sqrt(1.5), 1e-12);
  });

  it('the coordinator killed after a round was released, before its checkpoint: after resume ε includes that round', async () => {
    const dir = tmpDir('tg-crash-');
    const port = await freePort();
    const file = writeConfig(dir, {
      rounds: 4,
      coordinator: { host: '127.0.0.1', port },
      checkpoint: { dir: path.join(dir, 'ckpt'), everyRounds: 1 },
    });
    const first = startCrashingCoordinator(file, 2, FAST);
    procs.push(first);
    const addr = await address(first);
    const ws = [0, 1, 2].map((i) => startWorker(file, i, addr));
    procs.push(...ws);
    await first.exited;
    expect(first.child.signalCode).to.equal('SIGKILL');
    const ck = path.join(dir, 'ckpt');
    // Round 2 was released (ledger) but the newest checkpoint is round 1.
    expect(fs.readFileSync(path.join(ck, 'LATEST'), 'utf8').trim()).to.equal('round-000001');
    expect(new PrivacyLedger(path.join(ck, 'privacy-ledger.jsonl')).read().map((e) => e.round)).to.deep.equal(
      [1, 2],
    );

    const second = startCoordinator(file, FAST);
    procs.push(second);
    const done = await second.waitFor((l) => l.type === 'done', 180_000);
    expect(done.status).to.equal('succeeded');
    expect(done.rounds).to.equal(4);
    const ledger = new PrivacyLedger(path.join(ck, 'privacy-ledger.jsonl')).read();
    expect(ledger.map((e) => e.round)).to.deep.equal([1, 2, 3, 4]);
    const fresh = () => new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 3 });
    const acc = fresh();
    for (const e of ledger) acc.record(e);
    expect(done.epsilon).to.be.closeTo(acc.epsilon(), 1e-12);
    // The resumed coordinator's first round is the third release: ε already includes round 2.
    const firstAfter = second.lines.find((l) => l.type === 'metrics')!;
    expect(firstAfter.round).to.equal(3);
    const three = fresh();
    ledger.slice(0, 3).forEach((e) => three.record(e));
    expect(firstAfter.epsilon).to.be.closeTo(three.epsilon(), 1e-12);
    expect(await Promise.all(ws.map((w) => w.exited))).to.deep.equal([0, 0, 0]);
  });

  it('SIGTERM to the coordinator mid-job: the job ends failed with its report, done line and exit code, and the ledger charges every released round', async () => {
    const dir = tmpDir('tg-sigterm-');
    const file = writeConfig(dir, { rounds: 200, evaluation: { everyRounds: 200 } });
    const coord = startCoordinator(file, FAST);
    procs.push(coord);
    const addr = await address(coord);
    const ws = [0, 1, 2].map((i) => startWorker(file, i, addr, FAST));
    procs.push(...ws);
    await coord.waitFor((l) => l.type === 'metrics' && Number(l.round) >= 2);
    coord.child.kill('SIGTERM');
    const done = await coord.waitFor((l) => l.type === 'done', 60_000);
    expect(await coord.exited).to.equal(1);
    expect(coord.child.signalCode).to.equal(null); // it exited by itself, not by the signal
    expect(done.status).to.equal('failed');
    expect(done.error).to.equal('stopped by SIGTERM');
    const released = Number(done.rounds);
    expect(released).to.be.within(2, 199);
    const ck = path.join(dir, 'ckpt');
    const ledger = new PrivacyLedger(path.join(ck, 'privacy-ledger.jsonl')).read();
    // Every released round is charged; a round the gate let through just before the stop may be
    // charged without being released (never the other way round).
    expect(ledger.length).to.be.within(released, released + 1);
    const acc = new JobAccountant({ kind: 'rdp', delta: 1e-5, shardCount: 3 });
    for (const e of ledger) acc.record(e);
    expect(Number(done.epsilon)).to.be.at.most(acc.epsilon() + 1e-12);
    const report = JSON.parse(fs.readFileSync(String(done.privacy_report), 'utf8')) as { stopReason: string };
    expect(report.stopReason).to.equal('failed: stopped by SIGTERM');
    // The service stays up until every worker was told the job is over: they exit at once, and
    // cleanly, instead of retrying a vanished server for two minutes.
    expect(await Promise.all(ws.map((w) => w.exited))).to.deep.equal([0, 0, 0]);
  });

  describe('bad inputs fail clearly and leave the previous checkpoint untouched', () => {
    let dir: string;
    let file: string;
    before(async () => {
      dir = tmpDir('tg-bad-');
      file = writeConfig(dir, {
        rounds: 2,
        workers: { count: 2 },
        secureAggregation: { mode: 'masking', threshold: 2 },
      });
      const coord = startCoordinator(file, FAST);
      procs.push(coord);
      const addr = await address(coord);
      procs.push(startWorker(file, 0, addr), startWorker(file, 1, addr));
      const done = await coord.waitFor((l) => l.type === 'done');
      expect(done.status).to.equal('succeeded');
      killAll(procs.splice(0));
    });

    async function expectFailure(cfgFile: string, message: RegExp): Promise<void> {
      const ck = path.join(dir, 'ckpt');
      const before = snapshot(ck);
      const coord = startCoordinator(cfgFile, FAST);
      procs.push(coord);
      const done = await coord.waitFor((l) => l.type === 'done', 60_000);
      expect(done.status).to.equal('failed');
      expect(done.error as string).to.match(message);
      expect(await coord.exited).to.equal(1);
      expect(snapshot(ck)).to.deep.equal(before);
    }

    it('corrupt checkpoints with no intact one to fall back to', async () => {
      // (A corrupt latest with an intact previous one falls back: test/hostile/faults.test.ts.)
      const ck = path.join(dir, 'ckpt');
      const files = fs
        .readdirSync(ck)
        .filter((d) => /^round-\d{6}$/.test(d))
        .map((d) => path.join(ck, d, 'model.safetensors'));
      const originals = files.map((f) => fs.readFileSync(f));
      files.forEach((f, i) => {
        const bad = Buffer.from(originals[i]!);
        bad[bad.length - 5] = bad[bad.length - 5]! ^ 0x40;
        fs.writeFileSync(f, bad);
      });
      try {
        await expectFailure(
          file,
          /CheckpointError: .*round-000002\/model\.safetensors: corrupt checkpoint file \(SHA-256/,
        );
      } finally {
        files.forEach((f, i) => fs.writeFileSync(f, originals[i]!));
      }
    });

    it('a wrong base model', async () => {
      const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      const other = path.join(dir, 'other-model.json');
      fs.writeFileSync(other, JSON.stringify({ ...cfg, model: { kind: 'mlp', hidden: [24] } }));
      await expectFailure(other, /checkpoint was trained from a different base model/);
    });

    it('a truncated dataset', async () => {
      const csv = path.join(dir, 'train.csv');
      fs.writeFileSync(csv, 'a,b,label\n0.1,0.2,0\n0.3,0.4,1\n0.5');
      const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
      const other = path.join(dir, 'truncated.json');
      fs.writeFileSync(
        other,
        JSON.stringify({ ...cfg, dataset: { format: 'csv', path: csv, testPath: csv, numClasses: 2 } }),
      );
      await expectFailure(
        other,
        /DatasetError: .*train\.csv:4: 1 fields, the header has 3 \(is the file truncated\?\)/,
      );
    });
  });
});
