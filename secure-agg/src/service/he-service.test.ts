// HE scheme through the real gRPC services over loopback, in one process: the aggregator sums
// ciphertexts it cannot decrypt, the key holder (its own gRPC server) decrypts only the sum, and
// workers use the same SecureAggClient calls as under masking.
import { Client, credentials, status } from '@grpc/grpc-js';
import { secureAggregation as pb } from '@tensorguard/proto';
import { expect } from 'chai';
import {
  encodeIntegers,
  HeEncryptor,
  RoundAbortedError,
  ThresholdError,
  toIntegers,
  withCountSlot,
  ConfigError,
} from '../index.js';
import {
  AggregatorServer,
  KeyHolderClient,
  KeyHolderServer,
  SecureAggClient,
  type KeyHolderLink,
} from './index.js';
import { rawCall } from './testing/raw-call.js';

const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) => Buffer.from(t.encode(m).finish());

describe('service, HE scheme (in-process servers, real gRPC over loopback)', function () {
  this.timeout(120_000);
  let holder: KeyHolderServer;
  let khClient: KeyHolderClient;
  let link: KeyHolderLink;

  before(async () => {
    holder = await KeyHolderServer.create({ minInputs: 2 });
    const port = await holder.start();
    khClient = new KeyHolderClient({ address: `127.0.0.1:${port}` });
    link = await khClient.link();
  });

  after(async () => {
    khClient.close();
    await holder.close();
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
    const clients = [0, 1, 2, 3].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `e${i}` }),
    );
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
      expect(sum.survivors).to.deep.equal(['e0', 'e1', 'e2', 'e3']);
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
      expect(server.members()).to.deep.equal(['e0', 'e1', 'e2']);
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
    const clients = [0, 1, 2].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `b${i}` }),
    );
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
    const own = await KeyHolderServer.create({ minInputs: 2 });
    const ownClient = new KeyHolderClient({ address: `127.0.0.1:${await own.start()}` });
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
    const clients = [0, 1].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `q${i}` }),
    );
    try {
      for (const c of clients) await c.join();
      const ok = server.openRound();
      await Promise.all(
        clients.map(async (c, i) => c.contribute(await c.awaitRound(0), encodeIntegers(32, [i, 1]))),
      );
      expect(Array.from(toIntegers((await ok).ring))).to.deep.equal([1, 2]);
      expect(events).to.deep.equal(['gate 0 he q0,q1', 'decrypt 0']);
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
      expect(events).to.deep.equal(['gate 0 he q0,q1', 'decrypt 0', 'gate 1 he q0,q1']);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
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
    const clients = [0, 1].map(
      (i) => new SecureAggClient({ address: `127.0.0.1:${port}`, workerId: `k${i}` }),
    );
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
    // A key holder of its own: the shared one already decrypted a round 0 (once per round number).
    const holder = await KeyHolderServer.create({ minInputs: 2 });
    const khClient = new KeyHolderClient({ address: `127.0.0.1:${await holder.start()}` });
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
    const good = (v: number[]) =>
      encryptor.encrypt(withCountSlot(encodeIntegers(32, v))).map((c) => Buffer.from(c));
    const submit = (m: Partial<pb.SubmitEncryptedInputRequest>) =>
      rawCall(
        raw,
        'submitEncryptedInput',
        enc(pb.SubmitEncryptedInputRequest, {
          workerId: 'z0',
          round: 0,
          keyId: link.keyId,
          ciphertexts: [],
          ...m,
        }),
        5000,
      );
    try {
      for (const id of ['z0', 'z1', 'z2'])
        await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id, shardSize: 0 }));
      const pending = server.openRound().catch((e: unknown) => e);
      await rawCall(raw, 'awaitRound', enc(pb.AwaitRoundRequest, { workerId: 'z0', minRound: 0 }), 2000);
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
          enc(pb.SubmitMaskedInputRequest, { workerId: 'z1', round: 0, maskedVector: Buffer.alloc(12) }),
        ),
      ).to.deep.include({
        code: status.FAILED_PRECONDITION,
        details: "round 0 uses the HE scheme: send SubmitEncryptedInput, not a masking stage's message",
      });
      // z0's good input (the call waits for the round), then a duplicate.
      const first = submit({ ciphertexts: good([1, 2, 3]) });
      await new Promise((r) => setTimeout(r, 200));
      expect(await submit({ ciphertexts: good([9, 9, 9]) })).to.deep.include({
        code: status.ALREADY_EXISTS,
        details: 'round 0: member 0 already sent its encrypted input',
      });
      const second = submit({ workerId: 'z1', ciphertexts: good([10, 20, 30]) });
      const [a, b] = await Promise.all([first, second]); // z2 stays silent: the deadline closes the stage
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
      expect(await submit({ workerId: 'z1', ciphertexts: good([1, 1, 1]) })).to.deep.include({
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
