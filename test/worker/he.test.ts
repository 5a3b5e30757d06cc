// HE mode (secureAggregation.mode 'he') with real processes over loopback and mutual TLS with the
// job's identities (made by ray-cluster's pki.py, as on Ray): the key holder (secure-agg's
// bin/key-holder, its own certificate) holds the only secret key and decrypts only aggregates; the
// coordinator sums the survivors' ciphertexts; workers check the key holder's signature over the
// key and each round's nonce, pad and encrypt the same encoded, noised update as in masking mode.
import { jobSpecSchema, resolveRunConfig } from '@tensorguard/driver';
import {
  HE_CHECK_SLOTS,
  HeAccumulator,
  HeEncryptor,
  JobPki,
  KEY_HOLDER_NAME,
  encodeIntegers,
  heKeyDigest,
  hePads,
  padContribution,
  toIntegers,
  type HeRoundVoucher,
} from '@tensorguard/secure-agg';
import { KeyHolderClient } from '@tensorguard/secure-agg/service';
import { PrivacyLedger, parseRunConfig, readTlsDir } from '@tensorguard/worker';
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import {
  NOISELESS_FULL_BATCH,
  address,
  jobIdentities,
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
  const dirs: string[] = [];
  afterEach(() => killAll(procs.splice(0)));
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const identities = (job: string, workers: number) => {
    const ids = jobIdentities(job, workers);
    dirs.push(ids.aggregator, ids.keyHolder, ...ids.workers);
    return ids;
  };

  it('3 workers without noise, with a key holder at secureAggregation.keyHolder, equal one process of clipped SGD on the union (4 rounds)', async () => {
    const dir = tmpDir('tg-he-eq-');
    const base = {
      privacy: NOISELESS_FULL_BATCH,
      dataset: { format: 'idx', preset: 'fashion-mnist', trainExamples: 90, testExamples: 100 },
      rounds: 4,
      checkpoint: { dir: `${dir}/ckpt`, everyRounds: 4 },
    };
    const ids = identities('job-he-eq', 3);
    const holder = startKeyHolder(writeConfig(dir, { ...base, secureAggregation: HE }), ids.keyHolder);
    procs.push(holder);
    const keyHolder = (await holder.waitFor((l) => l.event === 'listening', 60_000)).address as string;
    const file = writeConfig(dir, { ...base, secureAggregation: { ...HE, keyHolder } });
    const { done, coord, ws } = await runJob(file, 3, {}, { ...ids, ownKeyHolder: false });
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
    const ids = identities('job-he-kill', 3);
    const coord = startCoordinator(file, FAST, [
      '--tls-dir',
      ids.aggregator,
      '--key-holder-tls-dir',
      ids.keyHolder,
    ]);
    procs.push(coord);
    const addr = await address(coord);
    const ws = [0, 1, 2].map((i) => startWorker(file, i, addr, {}, ['--tls-dir', ids.workers[i]!]));
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

  it("the key holder (pki.py's identities) decrypts only sums of ≥ t padded contributions, once per nonce, and never one worker's ciphertext passed off as a sum", async () => {
    const dir = tmpDir('tg-he-kh-');
    const ids = identities('job-he-kh', 2);
    const holder = startKeyHolder(writeConfig(dir, { secureAggregation: HE }), ids.keyHolder);
    procs.push(holder);
    const addr = (await holder.waitFor((l) => l.event === 'listening', 60_000)).address as string;
    const agg = readTlsDir(ids.aggregator);
    const kh = new KeyHolderClient({
      address: addr,
      tls: { rootCa: agg.ca, certChain: agg.cert, privateKey: agg.key },
    });
    try {
      const pk = await kh.publicKey();
      expect(pk.minInputs).to.equal(2);
      const enc = await HeEncryptor.create(pk.publicKey);
      const workers = ids.workers.map((d) => new JobPki(readTlsDir(d)));
      // What an honest worker sends (SecureAggClient's HE path): pads from ECDH with the key
      // holder's certified key, under the round's nonce.
      const contribution = (w: number, v: HeRoundVoucher, xs: number[]) => {
        const key = workers[w]!.padKey(workers[w]!.member(v.certificate, KEY_HOLDER_NAME));
        const pads = hePads(key, heKeyDigest(pk.publicKey), v.nonce, xs.length + HE_CHECK_SLOTS);
        return enc.encryptResidues(padContribution(encodeIntegers(32, xs), pads));
      };
      const sumOf = async (...cs: Uint8Array[][]) => {
        const acc = await HeAccumulator.create(3 + HE_CHECK_SLOTS, 32);
        for (const c of cs) acc.add(c);
        const out = acc.result();
        acc.dispose();
        return out;
      };
      const who = (w: number) => ({ id: `worker-${w}`, certificate: workers[w]!.certPem });
      const ask = (
        round: number,
        v: HeRoundVoucher,
        declared: number[],
        aggregate: Awaited<ReturnType<typeof sumOf>>,
      ) =>
        kh.decryptSum({ round, nonce: v.nonce, keyId: pk.keyId, contributors: declared.map(who), aggregate });

      const v1 = await kh.openRound(1);
      const one = await rejection(ask(1, v1, [0], await sumOf(contribution(0, v1, [1, -2, 3]))));
      expect(one.details).to.equal('round 1: the key holder decrypts only sums of ≥ 2 contributions, got 1');

      // One worker's ciphertext plus the aggregator's own encryption, declared as a sum of two.
      const v2 = await kh.openRound(2);
      const own = enc.encryptResidues(new BigUint64Array(3 + HE_CHECK_SLOTS));
      const forged = await rejection(ask(2, v2, [0, 1], await sumOf(contribution(0, v2, [1, -2, 3]), own)));
      expect(forged.details).to.equal(
        "round 2: the aggregate is not the sum of the 2 declared contributors' inputs under this round's nonce (its check slots are not zero); nothing is returned",
      );
      // Refused once, spent: not even the honest sum is decrypted under that nonce afterwards.
      const honest2 = await sumOf(contribution(0, v2, [1, -2, 3]), contribution(1, v2, [10, 20, -30]));
      expect((await rejection(ask(2, v2, [0, 1], honest2))).details).to.match(
        /already decrypted \(or refused\)/,
      );

      const v3 = await kh.openRound(3);
      const honest3 = await sumOf(contribution(0, v3, [1, -2, 3]), contribution(1, v3, [10, 20, -30]));
      const dup = await rejection(ask(3, v3, [0, 0], honest3));
      expect(dup.details).to.equal('round 3: contributors must be distinct');

      const v4 = await kh.openRound(4);
      const honest4 = await sumOf(contribution(0, v4, [1, -2, 3]), contribution(1, v4, [10, 20, -30]));
      expect(Array.from(toIntegers(await ask(4, v4, [0, 1], honest4)))).to.deep.equal([11, 18, -27]);
      // A second sum under the same nonce (e.g. over a subset) would reveal the difference.
      expect((await rejection(ask(4, v4, [0, 1], honest4))).details).to.match(
        /^round 4: this nonce was already decrypted/,
      );
      // A nonce the key holder never issued.
      const made = { ...v4, nonce: new Uint8Array(32).fill(7) };
      const honestMade = await sumOf(contribution(0, made, [1, 1, 1]), contribution(1, made, [1, 1, 1]));
      expect((await rejection(ask(5, made, [0, 1], honestMade))).details).to.match(/did not issue the nonce/);
    } finally {
      kh.close();
    }
  });

  it("the coordinator's own key holder exits when the coordinator is SIGKILLed", async () => {
    const dir = tmpDir('tg-he-orphan-');
    const ids = identities('job-he-orphan', 0);
    const coord = startCoordinator(writeConfig(dir, { secureAggregation: HE }), {}, [
      '--tls-dir',
      ids.aggregator,
      '--key-holder-tls-dir',
      ids.keyHolder,
    ]);
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
