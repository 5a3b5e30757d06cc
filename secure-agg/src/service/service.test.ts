import { Client, credentials, status } from '@grpc/grpc-js';
import { secureAggregation as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeIntegers, generateKeyPair, ThresholdError, toIntegers } from '../index.js';
import { AggregatorServer, SecureAggClient, type RoundSum } from './index.js';
import { rawCall } from './testing/raw-call.js';

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
      for (const id of ['x0', 'x1', 'x2']) await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id }));
      expect(await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: 'bad id!' }))).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: 'worker_id must be 1..128 characters of [A-Za-z0-9._:-], got "bad id!"',
      });
      expect((await rawCall(raw, 'join', Buffer.from([0x0a, 0xff]))).code).to.equal(status.INVALID_ARGUMENT);
      const pending = server.openRound().catch(() => undefined);
      const keys = (index: number) => ({
        index,
        encryptionKey: Buffer.from(generateKeyPair().publicKey),
        maskingKey: Buffer.from(generateKeyPair().publicKey),
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

  describe('TLS', () => {
    let dir: string;
    before(function () {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-tls-'));
      const ssl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
      ssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        '1',
        '-subj',
        '/CN=tg-test-ca',
      );
      for (const who of ['server', 'client']) {
        ssl(
          'req',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          `${who}.key`,
          '-out',
          `${who}.csr`,
          '-subj',
          `/CN=${who === 'server' ? 'localhost' : 'worker'}`,
        );
        fs.writeFileSync(
          path.join(dir, `${who}.ext`),
          who === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n',
        );
        ssl(
          'x509',
          '-req',
          '-in',
          `${who}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${who}.pem`,
          '-days',
          '1',
          '-extfile',
          `${who}.ext`,
        );
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const read = (f: string) => fs.readFileSync(path.join(dir, f));

    it('runs a round over mutual TLS and refuses a client without a certificate', async () => {
      const server = new AggregatorServer({
        vectorLength: 2,
        bits: 32,
        deadlinesMs: FAST,
        tls: { certChain: read('server.pem'), privateKey: read('server.key'), clientCa: read('ca.pem') },
      });
      const port = await server.start();
      const tls = { rootCa: read('ca.pem'), certChain: read('client.pem'), privateKey: read('client.key') };
      const clients = [0, 1].map(
        (i) => new SecureAggClient({ address: `localhost:${port}`, workerId: `t${i}`, tls }),
      );
      const anonymous = new SecureAggClient({
        address: `localhost:${port}`,
        workerId: 'anon',
        tls: { rootCa: read('ca.pem') },
        callTimeoutMs: 3000,
      });
      try {
        for (const c of clients) await c.join();
        const pending = server.openRound();
        await Promise.all(
          clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 1]))),
        );
        expect(Array.from(toIntegers((await pending).ring))).to.deep.equal([1, 2]);
        let refused: Error | undefined;
        await anonymous.join().catch((e: Error) => (refused = e));
        expect(refused?.message).to.match(/^join failed: /);
      } finally {
        [...clients, anonymous].forEach((c) => c.close());
        await server.close();
      }
    });
  });
});
