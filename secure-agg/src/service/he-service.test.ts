// HE scheme through the real gRPC services over loopback, in one process: the aggregator sums
// ciphertexts it cannot decrypt, the key holder (its own gRPC server) decrypts only the sum, and
// workers use the same SecureAggClient calls as under masking.
import { Client, credentials, status } from '@grpc/grpc-js';
import { secureAggregation as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  encodeIntegers,
  HeEncryptor,
  RoundAbortedError,
  ThresholdError,
  toIntegers,
  JobPki,
  PermissionError,
  ConfigError,
} from '../index.js';
import {
  AggregatorServer,
  KeyHolderClient,
  KeyHolderServer,
  SecureAggClient,
  type KeyHolderLink,
} from './index.js';
import { honestContribution } from '../testing/he-worker.js';
import { makeJobPki } from './testing/pki.js';
import { rawCall } from './testing/raw-call.js';

const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) => Buffer.from(t.encode(m).finish());

describe('service, HE scheme (in-process servers, real gRPC over loopback)', function () {
  this.timeout(120_000);
  let holder: KeyHolderServer;
  let khClient: KeyHolderClient;
  let link: KeyHolderLink;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-he-svc-'));
  const pki = makeJobPki(root, 4);
  const aggTls = () => {
    const id = pki.identity('aggregator');
    return { rootCa: id.ca, certChain: id.cert, privateKey: id.key };
  };
  /** A key holder of the job and the aggregator's mutual-TLS client of it. */
  const startKeyHolder = async () => {
    const h = await KeyHolderServer.create({ minInputs: 2, identity: pki.identity('key-holder') });
    const c = new KeyHolderClient({ address: `127.0.0.1:${await h.start()}`, tls: aggTls() });
    return { h, c };
  };
  const worker = (port: number, i: number) =>
    new SecureAggClient({
      address: `127.0.0.1:${port}`,
      workerId: `worker-${i}`,
      jobIdentity: pki.identity(`worker-${i}`),
    });

  before(async () => {
    ({ h: holder, c: khClient } = await startKeyHolder());
    link = await khClient.link();
  });

  after(async () => {
    khClient.close();
    await holder.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('needs a key holder, and refuses masking-only options', () => {
    expect(() => new AggregatorServer({ vectorLength: 3, bits: 32, scheme: 'he' })).to.throw(
      ConfigError,
      'keyHolder: scheme "he" needs a key holder',
    );
    expect(() => new AggregatorServer({ vectorLength: 3, bits: 32, keyHolder: link })).to.throw(
      ConfigError,
      'keyHolder: applies to scheme "he" only',
    );
    expect(
      () =>
        new AggregatorServer({ vectorLength: 3, bits: 32, scheme: 'he', keyHolder: link, mode: 'secagg+' }),
    ).to.throw(ConfigError, 'mode: applies to scheme "masking" only');
  });

  it('runs HE rounds with the masking interface: the decrypted sum is the integer sum of the inputs', async () => {
    const server = new AggregatorServer({
      vectorLength: 5,
      bits: 64,
      scheme: 'he',
      keyHolder: link,
      encryptedInputMs: 4000,
    });
    const port = await server.start();
    const clients = [0, 1, 2, 3].map((i) => worker(port, i));
    try {
      for (const c of clients) await c.join();
      const inputs = clients.map((_, i) => [i, -2 * i, 1e12, -(2 ** 40), i * i]);
      const pending = server.openRound({ modelVersion: { round: 0, fingerprint: 'f0' } });
      const outcomes = await Promise.all(
        clients.map(async (c, i) => {
          const open = await c.awaitRound(0);
          expect(open.scheme).to.equal('he');
          expect(open.he!.keyId).to.equal(link.keyId);
          expect(open.params.minInputs).to.equal(3);
          return c.contribute(open, encodeIntegers(64, inputs[i]!));
        }),
      );
      const sum = await pending;
      expect(sum.survivors).to.deep.equal(['worker-0', 'worker-1', 'worker-2', 'worker-3']);
      expect(Array.from(toIntegers(sum.ring))).to.deep.equal([6, -12, 4e12, -4 * 2 ** 40, 14]);
      expect(outcomes.map((o) => o.completed)).to.deep.equal([true, true, true, true]);
      expect(outcomes[0]!.survivors).to.deep.equal([0, 1, 2, 3]);

      // Round 1: one member never sends; the other three are enough (t = 3).
      const r1 = server.openRound();
      const out1 = await Promise.all(
        clients.map(async (c, i) => {
          const open = await c.awaitRound(1);
          if (i === 3) return undefined;
          return c.contribute(open, encodeIntegers(64, [1, 2, 3, 4, 5]));
        }),
      );
      expect(Array.from(toIntegers((await r1).ring))).to.deep.equal([3, 6, 9, 12, 15]);
      expect(out1[0]!.survivors).to.deep.equal([0, 1, 2]);
      expect(server.members()).to.deep.equal(['worker-0', 'worker-1', 'worker-2']);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('aborts below min_inputs without asking the key holder, and tells the workers why', async () => {
    let asked = 0;
    const counting: KeyHolderLink = { ...link, decryptSum: (r) => (asked++, link.decryptSum(r)) };
    const server = new AggregatorServer({
      vectorLength: 2,
      bits: 32,
      scheme: 'he',
      keyHolder: counting,
      encryptedInputMs: 1500,
    });
    const port = await server.start();
    const clients = [0, 1, 2].map((i) => worker(port, i));
    try {
      for (const c of clients) await c.join();
      const pending = server.openRound().catch((e: unknown) => e);
      const open = await clients[0]!.awaitRound(0);
      const outcome = await clients[0]!.contribute(open, encodeIntegers(32, [1, 1]));
      const err = await pending;
      expect(err).to.be.instanceOf(ThresholdError);
      expect((err as Error).message).to.equal(
        'round 0 aborted after ENCRYPTED_INPUT: 1 contributions arrived, fewer than the 2 required; nothing was decrypted',
      );
      expect(outcome).to.deep.include({ completed: false, survivors: [] });
      expect(outcome.reason).to.contain('nothing was decrypted');
      expect(asked).to.equal(0);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('asks the release gate before the key holder decrypts; a refused release decrypts nothing', async () => {
    const events: string[] = [];
    let refuse = false;
    // Its own key holder: a key holder decrypts each round number once, and other tests used 0.
    const { h: own, c: ownClient } = await startKeyHolder();
    const ownLink = await ownClient.link();
    const watched: KeyHolderLink = {
      ...ownLink,
      decryptSum: (req) => {
        events.push(`decrypt ${req.round}`);
        return ownLink.decryptSum(req);
      },
    };
    const server = new AggregatorServer({
      vectorLength: 2,
      bits: 32,
      scheme: 'he',
      keyHolder: watched,
      releaseGate: async (r) => {
        events.push(`gate ${r.round} ${r.scheme} ${r.survivors.join(',')}`);
        if (refuse) throw new Error('the privacy budget is spent');
      },
    });
    const port = await server.start();
    const clients = [0, 1].map((i) => worker(port, i));
    try {
      for (const c of clients) await c.join();
      const ok = server.openRound();
      await Promise.all(
        clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 1]))),
      );
      expect(Array.from(toIntegers((await ok).ring))).to.deep.equal([1, 2]);
      expect(events).to.deep.equal(['gate 0 he worker-0,worker-1', 'decrypt 0']);
      refuse = true;
      const refused = server.openRound().catch((e: unknown) => e);
      const outs = await Promise.all(
        clients.map(async (c) => c.contribute(await c.awaitRound(1), encodeIntegers(32, [1, 2]))),
      );
      expect(((await refused) as Error).message).to.equal(
        'round 1 aborted: the release was refused (the privacy budget is spent); nothing was decrypted',
      );
      expect(outs.every((o) => !o.completed && o.reason.includes('the privacy budget is spent'))).to.equal(
        true,
      );
      expect(events).to.deep.equal([
        'gate 0 he worker-0,worker-1',
        'decrypt 0',
        'gate 1 he worker-0,worker-1',
      ]);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
      ownClient.close();
      await own.close();
    }
  });

  it("a worker refuses a round whose key or nonce its job's key holder does not vouch for", async () => {
    // A dishonest aggregator announcing a BFV key of its own: it holds the secret key of `own`.
    const { h: own, c: ownClient } = await startKeyHolder();
    const ownLink = await ownClient.link();
    const forgedKey: KeyHolderLink = {
      ...link,
      // the real key holder's signature, over a nonce, but the aggregator's own key announced
      publicKey: ownLink.publicKey,
      keyId: ownLink.keyId,
    };
    const otherCa = makeJobPki(fs.mkdtempSync(path.join(root, 'other-')), 1);
    const selfSigned: KeyHolderLink = {
      ...link,
      openRound: async (r) => ({
        ...(await link.openRound(r)),
        certificate: new Uint8Array(otherCa.identity('key-holder').cert),
      }),
    };
    try {
      for (const [kh, why] of [
        [
          forgedKey,
          /the key holder's signature does not cover the announced HE key and nonce; refusing to encrypt/,
        ],
        [
          selfSigned,
          /the announced key holder certificate is refused \(the certificate offered for tensorguard-key-holder is not issued by the job's CA\)/,
        ],
      ] as const) {
        const server = new AggregatorServer({
          vectorLength: 2,
          bits: 32,
          scheme: 'he',
          keyHolder: kh,
          encryptedInputMs: 500,
        });
        const port = await server.start();
        const c = worker(port, 0);
        try {
          await c.join();
          await worker(port, 1).join();
          const pending = server.openRound().catch((e: unknown) => e);
          const open = await c.awaitRound(0);
          let err: unknown;
          await c.contribute(open, encodeIntegers(32, [1, 2])).catch((e: unknown) => (err = e));
          expect(err).to.be.instanceOf(PermissionError);
          expect((err as Error).message).to.match(why);
          await pending;
        } finally {
          c.close();
          await server.close();
        }
      }
      // Without its job identity a worker cannot check the voucher, and does not encrypt.
      const server = new AggregatorServer({
        vectorLength: 2,
        bits: 32,
        scheme: 'he',
        keyHolder: link,
        encryptedInputMs: 500,
      });
      const port = await server.start();
      const anon = new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: 'worker-0' });
      try {
        await anon.join();
        await worker(port, 1).join();
        const pending = server.openRound().catch((e: unknown) => e);
        let err: unknown;
        await anon
          .contribute(await anon.awaitRound(0), encodeIntegers(32, [1, 2]))
          .catch((e: unknown) => (err = e));
        expect(err).to.be.instanceOf(ConfigError);
        expect((err as Error).message).to.match(
          /needs its job identity \(--tls-dir\) to check that the key holder vouches/,
        );
        await pending;
      } finally {
        anon.close();
        await server.close();
      }
    } finally {
      ownClient.close();
      await own.close();
    }
  });

  it('aborts the round, releasing nothing, when the key holder refuses', async () => {
    const refusing: KeyHolderLink = {
      ...link,
      decryptSum: () => Promise.reject(new RoundAbortedError('refused for the test')),
    };
    const server = new AggregatorServer({ vectorLength: 2, bits: 32, scheme: 'he', keyHolder: refusing });
    const port = await server.start();
    const clients = [0, 1].map((i) => worker(port, i));
    try {
      for (const c of clients) await c.join();
      const pending = server.openRound().catch((e: unknown) => e);
      const outs = await Promise.all(
        clients.map(async (c) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [1, 2]))),
      );
      expect(((await pending) as Error).message).to.match(
        /^round 0 aborted: the key holder at 127\.0\.0\.1:\d+ did not decrypt the sum \(refused for the test\); nothing was released$/,
      );
      expect(outs.every((o) => !o.completed && o.reason.includes('refused for the test'))).to.equal(true);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });

  it('refuses malformed, wrong-size, duplicate and out-of-stage HE messages with a status and a reason', async () => {
    const { h: holder, c: khClient } = await startKeyHolder();
    const link = await khClient.link();
    const server = new AggregatorServer({
      vectorLength: 3,
      bits: 32,
      scheme: 'he',
      keyHolder: link,
      encryptedInputMs: 3000,
    });
    const port = await server.start();
    const raw = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const encryptor = await HeEncryptor.create(link.publicKey);
    let ann: pb.RoundAnnouncement | undefined;
    const good = (v: number[], i = 0) => {
      const c = honestContribution(
        new JobPki(pki.identity(`worker-${i}`)),
        encryptor,
        ann!.heKeyHolderCertificate,
        link.publicKey,
        ann!.heRoundNonce,
        encodeIntegers(32, v),
      );
      return c.chunks.map((x) => Buffer.from(x));
    };
    const cert = (i: number) => pki.identity(`worker-${i}`).cert;
    const submit = (m: Partial<pb.SubmitEncryptedInputRequest>) =>
      rawCall(
        raw,
        'submitEncryptedInput',
        enc(pb.SubmitEncryptedInputRequest, {
          workerId: 'worker-0',
          round: 0,
          keyId: link.keyId,
          ciphertexts: [],
          certificate: cert(0),
          ...m,
        }),
        5000,
      );
    try {
      for (const id of ['worker-0', 'worker-1', 'worker-2'])
        await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id, shardSize: 0 }));
      const pending = server.openRound().catch((e: unknown) => e);
      const announced = await rawCall(
        raw,
        'awaitRound',
        enc(pb.AwaitRoundRequest, { workerId: 'worker-0', minRound: 0 }),
        2000,
      );
      ann = pb.RoundAnnouncement.decode(announced.body!);
      expect((await rawCall(raw, 'submitEncryptedInput', Buffer.from([0x0a, 0xff]))).code).to.equal(
        status.INVALID_ARGUMENT,
      );
      expect(await submit({ ciphertexts: [] })).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: 'chunks: expected 1 ciphertexts, got 0',
      });
      const bytes = await submit({ ciphertexts: [Buffer.alloc(300, 7)] });
      expect(bytes.code).to.equal(status.INVALID_ARGUMENT);
      expect(bytes.details).to.match(/^ciphertext 0 of 1 is not a BFV ciphertext for these parameters/);
      expect(await submit({ keyId: '0000000000000000', ciphertexts: good([1, 2, 3]) })).to.deep.include({
        code: status.INVALID_ARGUMENT,
        details: `round 0: member 0 encrypted under key 0000000000000000, not this round's ${link.keyId}`,
      });
      expect(await submit({ workerId: 'nobody', ciphertexts: good([1, 2, 3]) })).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'nobody is not in the roster of round 0',
      });
      expect(await submit({ round: 5, ciphertexts: good([1, 2, 3]) })).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'round 5 is not open',
      });
      // A masking stage's message in an HE round.
      expect(
        await rawCall(
          raw,
          'submitMaskedInput',
          enc(pb.SubmitMaskedInputRequest, {
            workerId: 'worker-1',
            round: 0,
            maskedVector: Buffer.alloc(12),
          }),
        ),
      ).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: "round 0 uses the HE scheme: send SubmitEncryptedInput, not a masking stage's message",
      });
      // worker-0's good input (the call waits for the round), then a duplicate.
      const first = submit({ ciphertexts: good([1, 2, 3]) });
      await new Promise((r) => setTimeout(r, 200));
      expect(await submit({ ciphertexts: good([9, 9, 9]) })).to.deep.include({
        code: status.ALREADY_EXISTS,
        details: 'round 0: member 0 already sent its encrypted input',
      });
      const second = submit({
        workerId: 'worker-1',
        certificate: cert(1),
        ciphertexts: good([10, 20, 30], 1),
      });
      const [a, b] = await Promise.all([first, second]); // worker-2 stays silent: the deadline closes the stage
      expect(a.code).to.equal(0);
      expect(pb.SubmitEncryptedInputResponse.decode(b.body!)).to.deep.equal({
        completed: true,
        reason: '',
        inputs: 2,
        contributors: [0, 1],
      });
      expect(Array.from(toIntegers(((await pending) as { ring: Uint32Array }).ring))).to.deep.equal([
        11, 22, 33,
      ]);
      // Out of stage: the round is over.
      expect(await submit({ workerId: 'worker-1', ciphertexts: good([1, 1, 1], 1) })).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: 'round 0: an encrypted input arrived in stage DONE',
      });
    } finally {
      raw.close();
      await server.close();
      khClient.close();
      await holder.close();
    }
  });
});
