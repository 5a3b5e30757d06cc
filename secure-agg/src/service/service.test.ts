import { Client, credentials, status } from '@grpc/grpc-js';
import { heKeyHolder as kh, HeKeyHolderService, secureAggregation as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import {
  encodeIntegers,
  generateKeyPair,
  JobFinishedError,
  PermissionError,
  ThresholdError,
  toIntegers,
  type RoundIdentity,
} from '../index.js';
import {
  AggregatorServer,
  KeyHolderClient,
  KeyHolderServer,
  SecureAggClient,
  type RoundSum,
} from './index.js';
import { makeJobPki } from './testing/pki.js';
import { rawCall, rawCallPath } from './testing/raw-call.js';

const FAST = { ADVERTISE_KEYS: 1500, SHARE_KEYS: 1500, MASKED_INPUT: 1500, UNMASK: 1500 };

describe('service (in-process server, real gRPC over loopback)', function () {
  this.timeout(60_000);

  it('runs rounds end to end, hands only the sum to the coordinator, and evicts a dropped worker', async () => {
    const sums: RoundSum[] = [];
    const server = new AggregatorServer({
      vectorLength: 5,
      bits: 64,
      deadlinesMs: FAST,
      onSum: (s) => void sums.push(s),
    });
    const port = await server.start();
    const clients = [0, 1, 2, 3, 4].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `w${i}` }),
    );
    try {
      for (const c of clients) await c.join();
      const inputs = clients.map((_, i) => [i, -2 * i, 1e12, -(2 ** 40), i * i]);
      const pending = server.openRound({ modelVersion: { round: 0, fingerprint: 'f0' } });
      const outcomes = await Promise.all(
        clients.map(async (c, i) => {
          const open = await c.awaitRound(0);
          expect(open.modelVersion).to.deep.equal({ round: 0, fingerprint: 'f0' });
          const prepared = await c.prepare(open);
          if (i === 4) return undefined; // drops after sharing keys: its masks are removed via its key shares
          return c.submit(prepared, encodeIntegers(64, inputs[i]!));
        }),
      );
      const sum = await pending;
      expect(outcomes.slice(0, 4).every((o) => o!.completed)).to.equal(true);
      expect(sum.survivors).to.deep.equal(['w0', 'w1', 'w2', 'w3']);
      expect(Array.from(toIntegers(sum.ring))).to.deep.equal([6, -12, 4e12, -4 * 2 ** 40, 14]);
      expect(sum.sum).to.be.instanceOf(BigInt64Array);
      await new Promise((r) => setImmediate(r));
      expect(sums).to.have.length(1);
      expect(server.members()).to.deep.equal(['w0', 'w1', 'w2', 'w3']);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it("reports what a training coordinator needs: awaiting changes, stages, traffic, the client's phases and bytes, and drained() after finish", async () => {
    const stages: string[] = [];
    const server = new AggregatorServer({
      vectorLength: 4,
      bits: 32,
      deadlinesMs: FAST,
      onStage: (round, stage) => void stages.push(`${round}:${stage}`),
    });
    const port = await server.start();
    const phases: string[] = [];
    const clients = [0, 1, 2].map(
      (i) =>
        new SecureAggClient({
          address: `127.0.0.1:${port}`,
          workerId: `t${i}`,
          phase: async (name, run) => {
            phases.push(`t${i}:${name}`);
            return run();
          },
        }),
    );
    try {
      for (const c of clients) await c.join();
      const changed = server.awaitingChange(10_000).then(() => server.awaiting());
      const waits = clients.map((c) => c.awaitRound(0));
      expect(await changed).to.have.length.at.least(1);
      while (server.awaiting().length < 3) await server.awaitingChange(1000);
      const before = server.traffic();
      const pending = server.openRound();
      const opens = await Promise.all(waits);
      await Promise.all(clients.map((c, i) => c.contribute(opens[i]!, encodeIntegers(32, [i, 1, 0, 0]))));
      expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([3, 3, 0, 0]);
      expect(stages).to.deep.equal(['0:SHARE_KEYS', '0:MASKED_INPUT', '0:UNMASK', '0:DONE']);
      expect([...phases].sort()).to.deep.equal([
        't0:mask',
        't0:upload',
        't1:mask',
        't1:upload',
        't2:mask',
        't2:upload',
      ]);
      const after = server.traffic();
      const sent = clients.reduce((a, c) => a + c.bytesSent, 0);
      // Each worker's masked vector alone is 4 bytes per value; the server saw every request byte.
      for (const c of clients) expect(c.bytesSent).to.be.above(4 * 4);
      expect(after.received - before.received).to.be.at.most(sent);
      expect(after.received - before.received).to.be.above(3 * 4 * 4);
      expect(after.sent).to.be.above(before.sent);
      // finish(): drained() waits until every member was told, and no longer.
      server.finish('test over');
      let drained = false;
      const draining = server.drained(10_000).then(() => (drained = true));
      await new Promise((r) => setTimeout(r, 50));
      expect(drained).to.equal(false);
      for (const c of clients) {
        const err = await c.awaitRound(1).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(JobFinishedError);
      }
      await draining;
      expect(drained).to.equal(true);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('overlaps key setup of round r+1 with round r and keeps rounds apart', async () => {
    const server = new AggregatorServer({ vectorLength: 3, bits: 32, deadlinesMs: FAST });
    const port = await server.start();
    const clients = [0, 1, 2].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `o${i}` }),
    );
    try {
      for (const c of clients) await c.join();
      const r0 = server.openRound();
      const prepared0 = await Promise.all(clients.map(async (c) => c.prepare(await c.awaitRound(0))));
      const r1 = server.openRound(); // round 1's key setup runs while round 0 waits for inputs
      const prepared1 = await Promise.all(clients.map(async (c) => c.prepare(await c.awaitRound(1))));
      await Promise.all(clients.map((c, i) => c.submit(prepared0[i]!, encodeIntegers(32, [i, 1, 0]))));
      await Promise.all(clients.map((c, i) => c.submit(prepared1[i]!, encodeIntegers(32, [0, 1, i]))));
      expect(Array.from(toIntegers((await r0).ring))).to.deep.equal([3, 3, 0]);
      expect(Array.from(toIntegers((await r1).ring))).to.deep.equal([0, 3, 3]);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('aborts below threshold: the coordinator gets a ThresholdError and workers a reason', async () => {
    const server = new AggregatorServer({ vectorLength: 2, bits: 32, deadlinesMs: FAST });
    const port = await server.start();
    const clients = [0, 1, 2, 3].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `a${i}` }),
    );
    try {
      for (const c of clients) await c.join();
      const pending = server.openRound().catch((e: unknown) => e);
      const outcomes = await Promise.all(
        clients.map(async (c, i) => {
          const p = await c.prepare(await c.awaitRound(0));
          if (i >= 2) return undefined; // two of four drop before their input: 2 < t = 3
          return c.submit(p, encodeIntegers(32, [1, 1]));
        }),
      );
      const err = await pending;
      expect(err).to.be.instanceOf(ThresholdError);
      expect((err as Error).message).to.equal(
        'round 0 aborted after MASKED_INPUT: 2 workers remain, fewer than the 3 required; nothing was unmasked',
      );
      expect(outcomes[0]!.completed).to.equal(false);
      expect(outcomes[0]!.reason).to.contain('fewer than the 3 required');
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('refuses malformed, duplicated, out-of-stage and wrong-length messages with a status and a reason', async () => {
    const server = new AggregatorServer({ vectorLength: 4, bits: 32, deadlinesMs: FAST });
    const port = await server.start();
    const raw = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) => Buffer.from(t.encode(m).finish());
    try {
      for (const id of ['x0', 'x1', 'x2'])
        await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id, shardSize: 0 }));
      expect(
        await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: 'bad id!', shardSize: 0 })),
      ).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: 'worker_id must be 1..128 characters of [A-Za-z0-9._:-], got "bad id!"',
      });
      expect((await rawCall(raw, 'join', Buffer.from([0x0a, 0xff]))).code).to.equal(status.INVALID_ARGUMENT);
      const pending = server.openRound().catch(() => undefined);
      const keys = (index: number) => ({
        index,
        encryptionKey: Buffer.from(generateKeyPair().publicKey),
        maskingKey: Buffer.from(generateKeyPair().publicKey),
        credential: Buffer.alloc(0),
        signature: Buffer.alloc(0),
      });
      expect(
        await rawCall(
          raw,
          'advertiseKeys',
          enc(pb.AdvertiseKeysRequest, { workerId: 'x0', round: 5, keys: keys(0) }),
        ),
      ).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'round 5 is not open',
      });
      expect(
        await rawCall(raw, 'shareKeys', enc(pb.ShareKeysRequest, { workerId: 'x0', round: 0, shares: [] })),
      ).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'round 0 is in stage ADVERTISE_KEYS; a SHARE_KEYS message is not accepted now',
      });
      expect(
        await rawCall(
          raw,
          'advertiseKeys',
          enc(pb.AdvertiseKeysRequest, { workerId: 'x0', round: 0, keys: keys(1) }),
        ),
      ).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: 'keys.index is 1 but x0 has index 0',
      });
      const first = rawCall(
        raw,
        'advertiseKeys',
        enc(pb.AdvertiseKeysRequest, { workerId: 'x0', round: 0, keys: keys(0) }),
        5000,
      );
      await new Promise((r) => setTimeout(r, 50));
      expect(
        await rawCall(
          raw,
          'advertiseKeys',
          enc(pb.AdvertiseKeysRequest, { workerId: 'x0', round: 0, keys: keys(0) }),
        ),
      ).to.deep.include({
        code: status.ALREADY_EXISTS,
        details: 'x0 (index 0) already sent its ADVERTISE_KEYS message',
      });
      expect(
        await rawCall(
          raw,
          'advertiseKeys',
          enc(pb.AdvertiseKeysRequest, { workerId: 'nobody', round: 0, keys: keys(0) }),
        ),
      ).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'nobody is not in the roster of round 0',
      });
      // Let the others advertise so the round reaches MASKED_INPUT, then send a wrong-length vector.
      const c1 = new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: 'x1' });
      const c2 = new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: 'x2' });
      const open = await c1.awaitRound(0);
      const [p1] = await Promise.all([c1.prepare(open), c2.prepare(open)]);
      expect((await first).code).to.equal(0);
      expect(p1.participant?.state).to.equal('READY');
      expect(
        await rawCall(
          raw,
          'submitMaskedInput',
          enc(pb.SubmitMaskedInputRequest, { workerId: 'x1', round: 0, maskedVector: Buffer.alloc(15) }),
        ),
      ).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: 'a vector of 4 32-bit words is 16 bytes, got 15',
      });
      const big = await rawCall(raw, 'submitMaskedInput', Buffer.alloc(2 << 20), 2000);
      expect(big.code).to.equal(status.RESOURCE_EXHAUSTED);
      c1.close();
      c2.close();
      await pending;
    } finally {
      raw.close();
      await server.close();
    }
  });

  it('runs the release gate after MASKED_INPUT and before anyone unmasks; a refused release unmasks nothing', async () => {
    const events: string[] = [];
    let refuse = false;
    const server = new AggregatorServer({
      vectorLength: 2,
      bits: 32,
      deadlinesMs: FAST,
      releaseGate: async (r) => {
        events.push(`gate ${r.round} ${r.survivors.join(',')}`);
        // Longer than the UNMASK deadline: the UNMASK clock must start only after the gate.
        await new Promise((res) => setTimeout(res, 2000));
        if (refuse) throw new Error('the privacy budget is spent');
      },
    });
    const port = await server.start();
    const clients = [0, 1, 2].map(
      (i) =>
        new SecureAggClient({
          address: `127.0.0.1:${port}`,
          workerId: `g${i}`,
          beforeStage: (stage, round) => void events.push(`${stage} ${round} g${i}`),
        }),
    );
    try {
      for (const c of clients) await c.join();
      const pending = server.openRound();
      await Promise.all(
        clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 1]))),
      );
      expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([3, 3]);
      const gateAt = events.indexOf('gate 0 g0,g1,g2');
      expect(gateAt).to.be.greaterThan(events.lastIndexOf('MASKED_INPUT 0 g2') - 1);
      expect(events.findIndex((e) => e.startsWith('UNMASK 0'))).to.be.greaterThan(gateAt);

      refuse = true;
      const refused = server.openRound();
      refused.catch(() => undefined);
      const outcomes = await Promise.all(
        clients.map(async (c, i) => c.contribute(await c.awaitRound(1), encodeIntegers(32, [i, 1]))),
      );
      for (const o of outcomes) {
        expect(o.completed).to.equal(false);
        expect(o.reason).to.include(
          'the release was refused (the privacy budget is spent); nothing was unmasked',
        );
      }
      let err: Error | undefined;
      await refused.catch((e: Error) => (err = e));
      expect(err?.message).to.include('the release was refused');
      expect(events.some((e) => e.startsWith('UNMASK 1'))).to.equal(false);
      expect(server.members()).to.deep.equal(['g0', 'g1', 'g2']);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('records shard sizes at Join and serves model versions through GetModel', async () => {
    const version = { round: 3, fingerprint: 'aa'.repeat(32) };
    const server = new AggregatorServer({
      vectorLength: 3,
      bits: 32,
      model: (v) => (v.round === 3 ? { version, parameters: Float32Array.from([1, -2, 0.5]) } : undefined),
    });
    const port = await server.start();
    const c = new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: 'm0' });
    const stranger = new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: 'm9' });
    try {
      await c.join(1234);
      expect(server.shardSizes()).to.deep.equal(new Map([['m0', 1234]]));
      const m = await c.getModel(version, 3);
      expect(m.version).to.deep.equal(version);
      expect(Array.from(m.parameters)).to.deep.equal([1, -2, 0.5]);
      let err: Error | undefined;
      await c.getModel({ round: 2, fingerprint: 'bb' }).catch((e: Error) => (err = e));
      expect(err?.message).to.include('model version 2 (bb) is not held by the aggregator');
      let err2: Error | undefined;
      await stranger.getModel(version).catch((e: Error) => (err2 = e));
      expect(err2?.message).to.include('m9 is not a member; call Join first');
    } finally {
      c.close();
      stranger.close();
      await server.close();
    }
  });

  it('continues a resumed numbering, takes per-round parameters, shows who awaits, and ends the job', async () => {
    const server = new AggregatorServer({ vectorLength: 2, bits: 64, deadlinesMs: FAST, firstRound: 41 });
    const port = await server.start();
    const clients = [0, 1, 2].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `p${i}` }),
    );
    try {
      for (const c of clients) await c.join();
      const waits = clients.map((c) => c.awaitRound(0));
      const deadline = Date.now() + 5000;
      while (server.awaiting().length < 3 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(server.awaiting().sort()).to.deep.equal(['p0', 'p1', 'p2']);
      const pending = server.openRound({ threshold: 3, degree: 2, minInputs: 3, bits: 32 });
      const opens = await Promise.all(waits);
      expect(opens[0]!.params).to.include({ round: 41, threshold: 3, degree: 2, minInputs: 3, bits: 32 });
      await Promise.all(clients.map((c, i) => c.contribute(opens[i]!, encodeIntegers(32, [i, -1]))));
      const sum = await pending;
      expect(sum.round).to.equal(41);
      expect(Array.from(toIntegers(sum.ring))).to.deep.equal([3, -3]);
      expect(server.awaiting()).to.deep.equal([]);

      const later = clients[0]!.awaitRound(42);
      server.finish('completed 1 rounds');
      for (const p of [later, clients[1]!.awaitRound(42)]) {
        let err: Error | undefined;
        await p.catch((e: Error) => (err = e));
        expect(err).to.be.instanceOf(JobFinishedError);
        expect(err?.message).to.equal('completed 1 rounds');
      }
      let refused: Error | undefined;
      await server.openRound().catch((e: Error) => (refused = e));
      expect(refused?.message).to.equal('the job is finished: completed 1 rounds');
      expect(() => new AggregatorServer({ vectorLength: 2, bits: 32, firstRound: -1 })).to.throw(
        'firstRound',
      );
      const narrow = new AggregatorServer({ vectorLength: 2, bits: 32 });
      let wide: Error | undefined;
      await narrow.openRound({ bits: 64, members: [] }).catch((e: Error) => (wide = e));
      expect(wide?.message).to.include('does not fit the 32-bit messages');
      await narrow.close();
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  describe('mutual TLS: a worker is who its certificate says', () => {
    let dir: string;
    let pki: ReturnType<typeof makeJobPki>;
    before(function () {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-tls-'));
      pki = makeJobPki(dir, 3);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    /** `role`'s file: 'ca.pem', 'cert.pem' or 'key.pem' (the --tls-dir layout). */
    const pem = (role: string, f: string) => fs.readFileSync(path.join(pki.dir(role), f));
    const tlsOf = (role: string) => ({
      rootCa: pem(role, 'ca.pem'),
      certChain: pem(role, 'cert.pem'),
      privateKey: pem(role, 'key.pem'),
      serverNameOverride: 'tensorguard-aggregator',
    });
    /** A RoundIdentity from the job's X.509 material, as worker-ts builds it from --tls-dir. */
    const identityOf = (name: string): RoundIdentity => {
      const ca = new X509Certificate(pem(name, 'ca.pem'));
      const key = createPrivateKey(pem(name, 'key.pem'));
      return {
        credential: pem(name, 'cert.pem'),
        sign: (data) => sign('sha256', data, key),
        verify: (member, credential, data, signature) => {
          const cert = new X509Certificate(Buffer.from(credential));
          return (
            cert.checkIssued(ca) &&
            cert.verify(ca.publicKey) &&
            /^CN=(.*)$/m.exec(cert.subject)?.[1] === member &&
            verify('sha256', data, cert.publicKey, signature)
          );
        },
      };
    };
    const serverTls = () => ({
      certChain: pem('aggregator', 'cert.pem'),
      privateKey: pem('aggregator', 'key.pem'),
      clientCa: pem('aggregator', 'ca.pem'),
    });

    it('runs a round with signed keys and the consistency check; refuses a client without a certificate', async () => {
      const server = new AggregatorServer({ vectorLength: 2, bits: 32, deadlinesMs: FAST, tls: serverTls() });
      const port = await server.start();
      const clients = [0, 1, 2].map(
        (i) =>
          new SecureAggClient({
            address: `127.0.0.1:${port}`,
            workerId: `worker-${i}`,
            tls: tlsOf(`worker-${i}`),
            identity: identityOf(`worker-${i}`),
          }),
      );
      const anonymous = new SecureAggClient({
        address: `127.0.0.1:${port}`,
        workerId: 'worker-0',
        tls: { rootCa: pem('aggregator', 'ca.pem'), serverNameOverride: 'tensorguard-aggregator' },
        callTimeoutMs: 3000,
      });
      try {
        for (const c of clients) await c.join();
        const pending = server.openRound();
        const outcomes = await Promise.all(
          clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 1]))),
        );
        expect(outcomes.map((o) => o.completed)).to.deep.equal([true, true, true]);
        expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([3, 3]);
        let refused: Error | undefined;
        await anonymous.join().catch((e: Error) => (refused = e));
        expect(refused?.message).to.match(/^join failed: /);
        expect(server.members()).to.not.include('anon');
      } finally {
        [...clients, anonymous].forEach((c) => c.close());
        await server.close();
      }
    });

    it("refuses worker-1's certificate claiming worker-2 with PERMISSION_DENIED and logs the peer", async () => {
      const lines: Record<string, unknown>[] = [];
      const logger = pino(
        { level: 'info' },
        { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
      );
      const server = new AggregatorServer({ vectorLength: 2, bits: 32, tls: serverTls(), logger });
      const port = await server.start();
      const impostor = new SecureAggClient({
        address: `127.0.0.1:${port}`,
        workerId: 'worker-2',
        tls: tlsOf('worker-1'),
      });
      const raw = new Client(
        `127.0.0.1:${port}`,
        credentials.createSsl(
          pem('worker-1', 'ca.pem'),
          pem('worker-1', 'key.pem'),
          pem('worker-1', 'cert.pem'),
        ),
        { 'grpc.ssl_target_name_override': 'tensorguard-aggregator' },
      );
      try {
        let err: Error | undefined;
        await impostor.join().catch((e: Error) => (err = e));
        expect(err).to.be.instanceOf(PermissionError);
        expect(err?.message).to.match(
          /names "worker-1", but the request claims worker "worker-2"; a worker may act only as itself/,
        );
        const r = await rawCall(
          raw,
          'join',
          Buffer.from(pb.JoinRequest.encode({ workerId: 'worker-2', shardSize: 0 }).finish()),
        );
        expect(r.code).to.equal(status.PERMISSION_DENIED);
        // Every method checks, not only Join: worker-1 joined as itself cannot wait as worker-2.
        expect(
          (
            await rawCall(
              raw,
              'join',
              Buffer.from(pb.JoinRequest.encode({ workerId: 'worker-1', shardSize: 0 }).finish()),
            )
          ).code,
        ).to.equal(status.OK);
        expect(
          (
            await rawCall(
              raw,
              'awaitRound',
              Buffer.from(pb.AwaitRoundRequest.encode({ workerId: 'worker-2', minRound: 0 }).finish()),
              2000,
            )
          ).code,
        ).to.equal(status.PERMISSION_DENIED);
        expect(server.members()).to.deep.equal(['worker-1']);
        const refusals = lines.filter(
          (l) => l.msg === 'refused a call whose certificate does not name the worker it claims to be',
        );
        expect(refusals.length).to.be.at.least(3);
        expect(refusals[0]).to.include({
          certificateName: 'worker-1',
          claimedWorkerId: 'worker-2',
          method: 'join',
        });
        expect(String(refusals[0]!.peer)).to.match(/^127\.0\.0\.1:\d+$/);
      } finally {
        impostor.close();
        raw.close();
        await server.close();
      }
    });

    it('HE over mutual TLS on both links; the key holder decrypts only for the aggregator', async () => {
      const holder = await KeyHolderServer.create({ minInputs: 2, identity: pki.identity('key-holder') });
      const khPort = await holder.start();
      // The aggregator's own certificate is its client identity towards the key holder.
      const khClient = new KeyHolderClient({
        address: `127.0.0.1:${khPort}`,
        tls: { ...tlsOf('aggregator'), serverNameOverride: 'tensorguard-key-holder' },
      });
      const server = new AggregatorServer({
        vectorLength: 2,
        bits: 32,
        scheme: 'he',
        keyHolder: await khClient.link(),
        tls: serverTls(),
      });
      const port = await server.start();
      const clients = [0, 1].map(
        (i) =>
          new SecureAggClient({
            address: `127.0.0.1:${port}`,
            workerId: `worker-${i}`,
            tls: tlsOf(`worker-${i}`),
            jobIdentity: pki.identity(`worker-${i}`),
          }),
      );
      const rogue = new Client(
        `127.0.0.1:${khPort}`,
        credentials.createSsl(
          pem('worker-1', 'ca.pem'),
          pem('worker-1', 'key.pem'),
          pem('worker-1', 'cert.pem'),
        ),
        { 'grpc.ssl_target_name_override': 'tensorguard-key-holder' },
      );
      try {
        for (const c of clients) await c.join();
        const pending = server.openRound();
        await Promise.all(
          clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 5]))),
        );
        expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([1, 10]);
        const ask = kh.DecryptSumRequest.encode({
          round: 1,
          contributors: ['worker-0', 'worker-1'],
          keyId: holder.keyId,
          length: 4,
          ringBits: 32,
          ciphertexts: [],
          nonce: Buffer.alloc(32),
          contributorCertificates: [],
        }).finish();
        const r = await rawCallPath(rogue, HeKeyHolderService.decryptSum.path, Buffer.from(ask), 3000);
        expect(r.code).to.equal(status.PERMISSION_DENIED);
        expect(r.details).to.match(
          /only the aggregator \(tensorguard-aggregator\) may call DecryptSum; the caller at .* is "worker-1"/,
        );
      } finally {
        clients.forEach((c) => c.close());
        rogue.close();
        await server.close();
        khClient.close();
        await holder.close();
      }
    });
  });
});
