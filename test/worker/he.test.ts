// HE mode (secureAggregation.mode 'he') with real processes over loopback: the key holder
// (secure-agg's bin/key-holder) holds the only secret key and decrypts only aggregates; the coordinator sums
// the survivors' ciphertexts; workers encrypt the same encoded, noised update as in masking mode.
import { jobSpecSchema, resolveRunConfig } from '@tensorguard/driver';
import {
  HeAccumulator,
  HeEncryptor,
  encodeIntegers,
  toIntegers,
  withCountSlot,
  type HeDecryptRequest,
} from '@tensorguard/secure-agg';
import { KeyHolderClient } from '@tensorguard/secure-agg/service';
import { PrivacyLedger, parseRunConfig } from '@tensorguard/worker';
import { expect } from 'chai';
import path from 'node:path';
import {
  NOISELESS_FULL_BATCH,
  address,
  killAll,
  runJob,
  startCoordinator,
  startKeyHolder,
  startWorker,
  tmpDir,
  writeConfig,
  type Proc,
} from './harness.js';
import { checkpointParams, clippedSgdReference, maxDiff } from './reference.js';

const FAST = { TENSORGUARD_STAGE_TIMEOUT_MS: '4000', TENSORGUARD_JOIN_GRACE_MS: '1500' };
const HE = { mode: 'he', threshold: 2 };

/** The gRPC status behind a refusal (secure-agg's client keeps it as the error's cause). */
async function rejection(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return (err as Error).cause as { code: number; details: string };
  }
  throw new Error('expected the call to be refused');
}

describe('worker + coordinator: HE mode', function () {
  this.timeout(300_000);
  const procs: Proc[] = [];
  afterEach(() => killAll(procs.splice(0)));

  it('3 workers without noise, with a key holder at secureAggregation.keyHolder, equal one process of clipped SGD on the union (4 rounds)', async () => {
    const dir = tmpDir('tg-he-eq-');
    const base = {
      privacy: NOISELESS_FULL_BATCH,
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 90, testExamples: 100 },
      rounds: 4,
      checkpoint: { dir: `${dir}/ckpt`, everyRounds: 4 },
    };
    const holder = startKeyHolder(writeConfig(dir, { ...base, secureAggregation: HE }));
    procs.push(holder);
    const keyHolder = (await holder.waitFor((l) => l.event === 'listening', 60_000)).address as string;
    const file = writeConfig(dir, { ...base, secureAggregation: { ...HE, keyHolder } });
    const { done, coord, ws } = await runJob(file, 3);
    expect(done.status).to.equal('succeeded');
    expect(done.rounds).to.equal(4);
    // The stdout contract is the masking one: same lines, same phase names.
    const metrics = coord.lines.filter((l) => l.type === 'metrics');
    expect(metrics.map((m) => m.workers_alive)).to.deep.equal([3, 3, 3, 3]);
    expect(Object.keys(metrics[0]!.phase_seconds as object)).to.have.members([
      'aggregate',
      'unmask',
      'apply',
    ]);
    for (const w of ws) {
      const m = w.lines.filter((l) => l.type === 'metrics');
      expect(m).to.have.length(4);
      expect(Object.keys(m[0]!.phase_seconds as object)).to.have.members([
        'sample',
        'noise',
        'encode',
        'mask',
        'local', // clip → upload's end: the clip time alone is never exported
      ]);
      // One ciphertext per 4096 slots, not the 4 or 8 bytes per parameter of a masked vector.
      expect(m[0]!.bytes_sent as number).to.be.above(50_000);
    }
    // The configured key holder was used; the coordinator started none of its own.
    expect(coord.stderr.join('')).to.not.include('started the HE key holder');

    const ck = checkpointParams(file);
    expect(ck.round).to.equal(4);
    const { maxErr, maxAbs } = maxDiff(ck.params, clippedSgdReference(file, 4));
    // As for masking (training.test.ts): the sum is the same integer sum, bit for bit, so only the
    // fixed-point rounding (≤ 3 × 2^-16 / 90 per step, amplified by momentum) separates them.
    expect(maxErr).to.be.below(2e-5);
    expect(maxAbs).to.be.above(0.01);
  });

  it('a worker SIGKILLed mid-round: the round completes with the survivors (its own key holder, at the smaller realised noise)', async () => {
    const dir = tmpDir('tg-he-kill-');
    const file = writeConfig(dir, { rounds: 5, roundTimeoutMs: 5000, secureAggregation: HE });
    const coord = startCoordinator(file, FAST);
    procs.push(coord);
    const addr = await address(coord);
    const ws = [0, 1, 2].map((i) => startWorker(file, i, addr));
    procs.push(...ws);
    await coord.waitFor((l) => l.type === 'metrics' && l.round === 2);
    // Round 3 opens right after round 2's metrics; the worker is inside it (gradient or encryption).
    await new Promise((r) => setTimeout(r, 150));
    ws[2]!.child.kill('SIGKILL');
    const done = await coord.waitFor((l) => l.type === 'done', 180_000);
    expect(done.status).to.equal('succeeded');
    expect(done.rounds).to.equal(5);
    expect(coord.stderr.join('')).to.include('started the HE key holder');
    const alive = coord.lines.filter((l) => l.type === 'metrics').map((m) => m.workers_alive);
    expect(alive.slice(0, 2)).to.deep.equal([3, 3]);
    expect(alive).to.include(2);
    expect(await Promise.all(ws.slice(0, 2).map((w) => w.exited))).to.deep.equal([0, 0]);

    // Accounting as in masking: each worker adds σ²Δ²/t, so 2 survivors of t = 2 realise σ.
    const ledger = new PrivacyLedger(path.join(dir, 'ckpt/privacy-ledger.jsonl')).read();
    expect(ledger).to.have.length(5);
    const two = ledger.filter((e) => e.survivors === 2);
    expect(two.length).to.be.at.least(1);
    for (const e of two) {
      expect(e.noiseMultiplier).to.be.closeTo(1, 1e-12);
      expect(e.shards).to.deep.equal([0, 1]);
    }
    for (const e of ledger.filter((x) => x.survivors === 3))
      expect(e.noiseMultiplier).to.be.closeTo(Math.sqrt(1.5), 1e-12);
  });

  it('the key holder decrypts only aggregates of ≥ t contributions, once per round, and never one ciphertext passed off as a sum', async () => {
    const dir = tmpDir('tg-he-kh-');
    const holder = startKeyHolder(writeConfig(dir, { secureAggregation: HE }));
    procs.push(holder);
    const addr = (await holder.waitFor((l) => l.event === 'listening', 60_000)).address as string;
    const kh = new KeyHolderClient({ address: addr });
    const client = {
      decryptSum: (req: HeDecryptRequest) => kh.decryptSum({ ...req, keyId: pk.keyId }),
      close: () => kh.close(),
    };
    const pk = await kh.publicKey();
    try {
      expect(pk.minInputs).to.equal(2);
      const enc = await HeEncryptor.create(pk.publicKey);
      const contribution = (xs: number[]) => enc.encrypt(withCountSlot(encodeIntegers(32, xs)));
      const sumOf = async (...cs: Uint8Array[][]) => {
        const acc = await HeAccumulator.create(4, 32);
        for (const c of cs) acc.add(c);
        const agg = acc.result();
        acc.dispose();
        return agg;
      };
      const a = contribution([1, -2, 3]);
      const b = contribution([10, 20, -30]);

      const single = await sumOf(a);
      const one = await rejection(
        client.decryptSum({ round: 1, contributors: ['worker-0'], aggregate: single }),
      );
      expect(one.details).to.equal('round 1: the key holder decrypts only sums of ≥ 2 contributions, got 1');

      // One worker's ciphertext declared as a sum of two: the count slot gives it away.
      const forged = await rejection(
        client.decryptSum({
          round: 2,
          contributors: ['worker-0', 'worker-1'],
          aggregate: { ...single, inputs: 2 },
        }),
      );
      expect(forged.details).to.equal(
        'round 2: the aggregate holds 1 contribution(s), not the 2 declared; nothing is returned',
      );

      const dup = await rejection(
        client.decryptSum({
          round: 3,
          contributors: ['worker-0', 'worker-0'],
          aggregate: await sumOf(a, b),
        }),
      );
      expect(dup.details).to.equal('round 3: contributors must be distinct');

      const sum = await client.decryptSum({
        round: 4,
        contributors: ['worker-0', 'worker-1'],
        aggregate: await sumOf(a, b),
      });
      expect(Array.from(toIntegers(sum))).to.deep.equal([11, 18, -27]);

      // A second sum for the same round (e.g. over a subset) would reveal the difference.
      const again = await rejection(
        client.decryptSum({ round: 4, contributors: ['worker-0', 'worker-1'], aggregate: await sumOf(a, b) }),
      );
      expect(again.details).to.match(/^round 4 was already decrypted/);
      // A refused round stays used: no retry with other contributors.
      const retry = await rejection(
        client.decryptSum({ round: 2, contributors: ['worker-0', 'worker-1'], aggregate: await sumOf(a, b) }),
      );
      expect(retry.details).to.match(/^round 2 was already decrypted/);
    } finally {
      client.close();
    }
  });

  it("the coordinator's own key holder exits when the coordinator is SIGKILLed", async () => {
    const dir = tmpDir('tg-he-orphan-');
    const coord = startCoordinator(writeConfig(dir, { secureAggregation: HE }));
    procs.push(coord);
    await address(coord);
    const started = coord.stderr
      .join('')
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      })
      .find((l) => l.msg === 'started the HE key holder');
    const pid = started?.pid as number;
    expect(pid).to.be.a('number');
    expect(pid).to.not.equal(coord.child.pid);
    coord.child.kill('SIGKILL');
    await coord.exited;
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive()).to.equal(false);
  });

  it("a driver job spec with mode 'he' (the schema's) resolves into a config the worker accepts", async () => {
    // The schema, not parseJobSpec: the driver's cross-field checks (driver/src/spec/checks.ts)
    // still refuse 'he' as not implemented; that refusal is the driver's to lift.
    const spec = jobSpecSchema.parse({
      name: 'fashion-he',
      model: { kind: 'cnn-tanh' },
      dataset: { format: 'idx', preset: 'fashion-mnist' },
      workers: { count: 3 },
      privacy: { clipNorm: 1, noiseMultiplier: 1.1, epsilonBudget: 8, samplingRate: 0.01 },
      secureAggregation: { mode: 'he' },
      optimizer: { kind: 'sgd', learningRate: 0.1 },
      rounds: 10,
    });
    const resolved = await resolveRunConfig(spec, { jobId: 'he-job', dataDir: tmpDir('tg-he-spec-') });
    const cfg = parseRunConfig(JSON.parse(JSON.stringify(resolved)));
    expect(cfg.secureAggregation.mode).to.equal('he');
    expect(cfg.secureAggregation.quorum).to.equal(2); // 0.5 of 3 workers, rounded up
    expect(cfg.secureAggregation.keyHolder).to.equal(undefined);
  });
});
