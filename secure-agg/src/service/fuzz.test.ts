// Thousands of random and mutated protocol messages against a live aggregator over loopback: every
// call must end with a deliberate status (never INTERNAL, UNKNOWN or a dropped connection), and
// the aggregator must still run a correct round afterwards.
import { Client, credentials, status } from '@grpc/grpc-js';
import {
  heKeyHolder as kh,
  HeKeyHolderService,
  secureAggregation as pb,
  SecureAggregationService,
} from '@tensorguard/proto';
import { expect } from 'chai';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import nodePath from 'node:path';
import {
  compileRound,
  encodeIntegers,
  MalformedMessageError,
  HeAccumulator,
  HeEncryptor,
  JobPki,
  RoundParticipant,
  toIntegers,
  type HeRoundVoucher,
} from '../index.js';
import { honestContribution } from '../testing/he-worker.js';
import { makeJobPki } from './testing/pki.js';
import {
  advertisedKeysToProto,
  encryptedShareToProto,
  modelParametersFromProto,
  modelParametersToProto,
  roundOpenFromProto,
  roundOpenToProto,
  roundVoucherFromProto,
  roundVoucherToProto,
  type RoundTraining,
} from './convert.js';
import { AggregatorServer, KeyHolderClient, KeyHolderServer, SecureAggClient } from './index.js';
import { rawCall, rawCallPath } from './testing/raw-call.js';

type Method = keyof typeof SecureAggregationService;
const METHODS = Object.keys(SecureAggregationService) as Method[];
const ALLOWED = new Set<number>([
  status.OK,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.ALREADY_EXISTS,
  status.ABORTED,
  status.DEADLINE_EXCEEDED,
  status.NOT_FOUND,
  status.RESOURCE_EXHAUSTED,
]);

function mutate(seed: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(seed);
  switch (Math.floor(rnd() * 5)) {
    case 0: // flip a few bits
      for (let i = 0, k = 1 + Math.floor(rnd() * 8); i < k && b.length > 0; i++)
        b[Math.floor(rnd() * b.length)]! ^= 1 << Math.floor(rnd() * 8);
      return b;
    case 1: // truncate
      return b.subarray(0, Math.floor(rnd() * b.length));
    case 2: {
      // insert random bytes
      const at = Math.floor(rnd() * (b.length + 1));
      const ins = Buffer.from(
        Array.from({ length: 1 + Math.floor(rnd() * 16) }, () => Math.floor(rnd() * 256)),
      );
      return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
    }
    case 3: // overwrite a byte with a varint-breaking value
      if (b.length > 0) b[Math.floor(rnd() * b.length)] = 0xff;
      return b;
    default: // duplicate (a repeated field or a second copy of the message)
      return Buffer.concat([b, b]);
  }
}

describe('service fuzz (loopback)', function () {
  this.timeout(120_000);

  it('thousands of random and mutated messages never crash the aggregator, which then runs a correct round', async () => {
    const deadlinesMs = { ADVERTISE_KEYS: 700, SHARE_KEYS: 700, MASKED_INPUT: 700, UNMASK: 700 };
    const version = { round: 0, fingerprint: 'ab'.repeat(32) };
    let gated = 0;
    const server = new AggregatorServer({
      vectorLength: 8,
      bits: 32,
      deadlinesMs,
      // The training hooks run under the fuzz too: the gate approves, GetModel serves one version.
      releaseGate: async () => {
        gated++;
      },
      model: (v) =>
        v.round === version.round && v.fingerprint === version.fingerprint
          ? { version, parameters: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]) }
          : undefined,
    });
    const port = await server.start();
    const address = `127.0.0.1:${port}`;
    const raw = new Client(address, credentials.createInsecure());
    const codes = new Map<number, number>();
    const record = (code: number, details: string, what: string) => {
      codes.set(code, (codes.get(code) ?? 0) + 1);
      expect(ALLOWED.has(code), `${what}: status ${code} ${details}`).to.equal(true);
    };
    try {
      const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) =>
        Buffer.from(t.encode(m).finish());
      for (const id of ['f0', 'f1', 'f2', 'f3'])
        await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id, shardSize: 0 }));
      const training: RoundTraining = {
        encoding: { clipNorm: 1, scale: 1000, workers: 4, dimension: 8, noiseStd: 0.5 },
        noiseShareStd: 250,
        samplingRate: 0.1,
        clipNorm: 1,
      };
      const pending = server
        .openRound({ members: ['f0', 'f1', 'f2', 'f3'], modelVersion: version, training })
        .catch(() => undefined);
      const ann = await rawCall(
        raw,
        'awaitRound',
        enc(pb.AwaitRoundRequest, { workerId: 'f0', minRound: 0 }),
        2000,
      );
      const open = roundOpenFromProto(pb.RoundAnnouncement.decode(ann.body!));
      expect(open.training).to.deep.equal(training);
      const round = compileRound(open.params);
      const ps = [0, 1, 2, 3].map((i) => new RoundParticipant(round, i));
      const adv = ps.map((p) => p.advertiseKeys());
      const shares = ps.map((p) => p.shareKeys(adv));
      // Valid-looking seeds for every method, built from real protocol messages.
      const seeds: [Method, Buffer][] = [
        ['join', enc(pb.JoinRequest, { workerId: 'f1', shardSize: 0 })],
        ['awaitRound', enc(pb.AwaitRoundRequest, { workerId: 'f2', minRound: 0 })],
        [
          'advertiseKeys',
          enc(pb.AdvertiseKeysRequest, { workerId: 'f1', round: 0, keys: advertisedKeysToProto(adv[1]!) }),
        ],
        [
          'shareKeys',
          enc(pb.ShareKeysRequest, {
            workerId: 'f2',
            round: 0,
            shares: shares[2]!.shares.map(encryptedShareToProto),
          }),
        ],
        [
          'submitMaskedInput',
          enc(pb.SubmitMaskedInputRequest, { workerId: 'f3', round: 0, maskedVector: Buffer.alloc(32, 7) }),
        ],
        [
          'unmask',
          enc(pb.UnmaskRequest, {
            workerId: 'f0',
            round: 0,
            selfMaskShares: [0, 1, 2, 3].map((o) => ({ owner: o, share: Buffer.alloc(32, o) })),
            maskingKeyShares: [],
          }),
        ],
        [
          'attest',
          enc(pb.AttestRequest, {
            workerId: 'f1',
            round: 0,
            attestation: { index: 1, signature: Buffer.alloc(64, 3) },
          }),
        ],
        ['getModel', enc(pb.GetModelRequest, { workerId: 'f2', version })],
      ];
      let state = 1234567;
      const rnd = () => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state / 4294967296;
      };
      const calls: (() => Promise<void>)[] = [];
      for (let i = 0; i < 1500; i++) {
        const method = METHODS[Math.floor(rnd() * METHODS.length)]!;
        const body = Buffer.from(
          Array.from({ length: Math.floor(rnd() * 600) }, () => Math.floor(rnd() * 256)),
        );
        calls.push(async () => {
          const r = await rawCall(raw, method, body, 150);
          record(r.code, r.details, `random ${method}`);
        });
      }
      for (let i = 0; i < 1500; i++) {
        const [method, seed] = seeds[Math.floor(rnd() * seeds.length)]!;
        const body = rnd() < 0.1 ? seed : mutate(seed, rnd);
        calls.push(async () => {
          const r = await rawCall(raw, method, body, 150);
          record(r.code, r.details, `mutated ${method}`);
        });
      }
      // Structured mutations: valid encodings with hostile field values.
      fc.assert(
        fc.property(
          fc.record({
            workerId: fc.oneof(fc.constantFrom('f0', 'f1', 'f2', 'f3'), fc.string({ maxLength: 200 })),
            round: fc.oneof(fc.constant(0), fc.nat()),
            index: fc.oneof(fc.nat({ max: 5 }), fc.nat()),
            blob: fc.uint8Array({ maxLength: 120 }),
          }),
          ({ workerId, round, index, blob }) => {
            const b = Buffer.from(blob);
            const msgs: [Method, Buffer][] = [
              [
                'advertiseKeys',
                enc(pb.AdvertiseKeysRequest, {
                  workerId,
                  round,
                  keys: { index, encryptionKey: b, maskingKey: b, credential: b, signature: b },
                }),
              ],
              [
                'shareKeys',
                enc(pb.ShareKeysRequest, {
                  workerId,
                  round,
                  shares: [{ fromIndex: index, toIndex: index, ciphertext: b }],
                }),
              ],
              ['submitMaskedInput', enc(pb.SubmitMaskedInputRequest, { workerId, round, maskedVector: b })],
              [
                'unmask',
                enc(pb.UnmaskRequest, {
                  workerId,
                  round,
                  selfMaskShares: [{ owner: index, share: b }],
                  maskingKeyShares: [{ owner: index, share: b }],
                }),
              ],
              ['join', enc(pb.JoinRequest, { workerId, shardSize: index })],
              ['attest', enc(pb.AttestRequest, { workerId, round, attestation: { index, signature: b } })],
              [
                'getModel',
                enc(pb.GetModelRequest, {
                  workerId,
                  version: { round, fingerprint: b.toString('latin1') },
                }),
              ],
            ];
            for (const [m, body] of msgs) {
              calls.push(async () => {
                const r = await rawCall(raw, m, body, 150);
                record(r.code, r.details, `structured ${m}`);
              });
            }
          },
        ),
        { numRuns: 250 },
      );
      for (let i = 0; i < calls.length; i += 64) await Promise.all(calls.slice(i, i + 64).map((c) => c()));
      expect([...codes.values()].reduce((a, b) => a + b, 0)).to.equal(calls.length);
      expect(calls.length).to.be.at.least(4000);
      await pending;

      // Still healthy: a fresh round among new workers sums exactly.
      const clients = ['g0', 'g1', 'g2'].map((id) => new SecureAggClient({ address, workerId: id }));
      for (const c of clients) await c.join();
      const r = server.openRound({ members: ['g0', 'g1', 'g2'] });
      const ro = await clients[0]!.awaitRound(0);
      await Promise.all(
        clients.map(async (c, i) =>
          c.contribute(
            i === 0 ? ro : await c.awaitRound(ro.params.round),
            encodeIntegers(32, [i, i, i, i, 1, 1, 1, -i]),
          ),
        ),
      );
      expect(Array.from(toIntegers((await r).ring))).to.deep.equal([3, 3, 3, 3, 3, 3, 3, -3]);
      expect(gated, 'the release gate ran for the healthy round').to.be.at.least(1);
      expect(Array.from((await clients[1]!.getModel(version, 8)).parameters)).to.deep.equal([
        1, 2, 3, 4, 5, 6, 7, 8,
      ]);
      clients.forEach((c) => c.close());
    } finally {
      raw.close();
      await server.close();
    }
  });

  it('mutated announcements and model responses decode or are refused with MalformedMessageError', () => {
    const training: RoundTraining = {
      encoding: { clipNorm: 1, scale: 1000, workers: 3, dimension: 4, noiseStd: 0.5, bits: 64 },
      noiseShareStd: 12.5,
      samplingRate: 0.25,
      clipNorm: 1,
    };
    const annSeed = Buffer.from(
      pb.RoundAnnouncement.encode(
        roundOpenToProto({
          scheme: 'masking',
          params: {
            sessionId: new Uint8Array(16).fill(1),
            round: 3,
            members: ['a', 'b', 'c'],
            vectorLength: 4,
            bits: 64,
            threshold: 2,
            degree: 2,
            graphSeed: new Uint8Array(32),
            minInputs: 2,
          },
          deadlinesMs: { ADVERTISE_KEYS: 1, SHARE_KEYS: 1, MASKED_INPUT: 1, UNMASK: 1 },
          modelVersion: { round: 2, fingerprint: 'cd'.repeat(32) },
          training,
        }),
      ).finish(),
    );
    const heAnnSeed = Buffer.from(
      pb.RoundAnnouncement.encode(
        roundOpenToProto({
          ...roundOpenFromProto(pb.RoundAnnouncement.decode(annSeed)),
          scheme: 'he',
          he: {
            publicKey: new Uint8Array(48).fill(7),
            keyId: '0123456789abcdef',
            encryptedInputMs: 5,
            voucher: {
              certificate: new Uint8Array(60).fill(2),
              nonce: new Uint8Array(32).fill(3),
              signature: new Uint8Array(70).fill(4),
            },
          },
        }),
      ).finish(),
    );
    const voucherSeed = Buffer.from(
      kh.OpenRoundResponse.encode(
        roundVoucherToProto({
          certificate: new Uint8Array(60).fill(2),
          nonce: new Uint8Array(32).fill(3),
          signature: new Uint8Array(70).fill(4),
        }),
      ).finish(),
    );
    const modelSeed = Buffer.from(
      pb.GetModelResponse.encode(
        modelParametersToProto({
          version: { round: 2, fingerprint: 'cd'.repeat(32) },
          parameters: Float32Array.from([0.5, -1, 2, 3]),
        }),
      ).finish(),
    );
    let state = 987654;
    const rnd = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 4294967296;
    };
    let refused = 0;
    const tryDecode = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        // Bytes that are not protobuf fail in the generated decoder (a RangeError or Error);
        // values the wire can carry but the domain cannot are our MalformedMessageError.
        if (!(err instanceof Error)) throw err;
        refused++;
      }
    };
    for (let i = 0; i < 3000; i++) {
      tryDecode(() => roundOpenFromProto(pb.RoundAnnouncement.decode(mutate(annSeed, rnd))));
      tryDecode(() => roundOpenFromProto(pb.RoundAnnouncement.decode(mutate(heAnnSeed, rnd))));
      tryDecode(() => roundVoucherFromProto(kh.OpenRoundResponse.decode(mutate(voucherSeed, rnd))));
      tryDecode(() => modelParametersFromProto(pb.GetModelResponse.decode(mutate(modelSeed, rnd)), 4));
    }
    expect(refused).to.be.greaterThan(0);
    // Hostile values with a valid encoding: always MalformedMessageError, naming the field.
    const hostile: [Partial<pb.TrainingParams>, string][] = [
      [{ noiseShareStd: -1 }, 'training.noise_share_std'],
      [{ noiseShareStd: Number.NaN }, 'training.noise_share_std'],
      [{ samplingRate: 0 }, 'training.sampling_rate'],
      [{ samplingRate: 1.5 }, 'training.sampling_rate'],
      [{ clipNorm: Number.POSITIVE_INFINITY }, 'training.clip_norm'],
      [{ encoding: undefined }, 'training.encoding'],
    ];
    const base = pb.RoundAnnouncement.decode(annSeed);
    for (const [patch, field] of hostile) {
      const m = { ...base, training: { ...base.training!, ...patch } };
      const bytes = pb.RoundAnnouncement.encode(m).finish();
      expect(() => roundOpenFromProto(pb.RoundAnnouncement.decode(bytes)), field).to.throw(
        MalformedMessageError,
        field,
      );
    }
  });

  it('random and mutated HE messages (SubmitEncryptedInput, the key holder) never crash either service', async () => {
    // Two key holders of one job: the aggregator's own (reached only through the aggregator), and
    // one that takes the fuzz directly, over mutual TLS as the aggregator (so the fuzz reaches the
    // handlers). A key holder burns a nonce on any DecryptSum naming it (by design); the fuzzed
    // one gets its own health check with a nonce it issued afterwards.
    const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'tg-fuzz-he-'));
    const pki = makeJobPki(root, 7);
    const agg = pki.identity('aggregator');
    const aggTls = { rootCa: agg.ca, certChain: agg.cert, privateKey: agg.key };
    const holder = await KeyHolderServer.create({ minInputs: 2, identity: pki.identity('key-holder') });
    const khAddress = `127.0.0.1:${await holder.start()}`;
    const khClient = new KeyHolderClient({ address: khAddress, tls: aggTls });
    const link = await khClient.link();
    const fuzzedHolder = await KeyHolderServer.create({ minInputs: 2, identity: pki.identity('key-holder') });
    const fuzzedAddress = `127.0.0.1:${await fuzzedHolder.start()}`;
    const fuzzedClient = new KeyHolderClient({ address: fuzzedAddress, tls: aggTls });
    const fuzzedLink = await fuzzedClient.link();
    const workerPki = [0, 1, 2, 3, 4, 5, 6].map((i) => new JobPki(pki.identity(`worker-${i}`)));
    const server = new AggregatorServer({
      vectorLength: 6,
      bits: 32,
      scheme: 'he',
      keyHolder: link,
      encryptedInputMs: 1500,
    });
    const address = `127.0.0.1:${await server.start()}`;
    const raw = new Client(address, credentials.createInsecure());
    const rawKh = new Client(fuzzedAddress, credentials.createSsl(agg.ca, agg.key, agg.cert), {
      'grpc.ssl_target_name_override': 'tensorguard-key-holder',
    });
    const codes = new Map<number, number>();
    const record = (code: number, details: string, what: string) => {
      codes.set(code, (codes.get(code) ?? 0) + 1);
      expect(ALLOWED.has(code), `${what}: status ${code} ${details}`).to.equal(true);
    };
    const enc = <T>(t: { encode(m: T): { finish(): Uint8Array } }, m: T) => Buffer.from(t.encode(m).finish());
    try {
      const f = ['worker-0', 'worker-1', 'worker-2', 'worker-3'];
      for (const id of f) await rawCall(raw, 'join', enc(pb.JoinRequest, { workerId: id, shardSize: 0 }));
      const pending = server.openRound({ members: f }).catch(() => undefined);
      const ann = pb.RoundAnnouncement.decode(
        (await rawCall(raw, 'awaitRound', enc(pb.AwaitRoundRequest, { workerId: f[0]!, minRound: 0 }), 2000))
          .body!,
      );
      const encryptor = await HeEncryptor.create(link.publicKey);
      const v = encodeIntegers(32, [1, 2, 3, 4, 5, 6]);
      const ct = honestContribution(
        workerPki[1]!,
        encryptor,
        ann.heKeyHolderCertificate,
        link.publicKey,
        ann.heRoundNonce,
        v,
      ).chunks;
      // An honest aggregate for the fuzzed key holder, for its DecryptSum seed and its check.
      const fuzzedEnc = await HeEncryptor.create(fuzzedLink.publicKey);
      const fuzzedAggregate = async (voucher: HeRoundVoucher) => {
        const acc = await HeAccumulator.create(6 + 2, 32);
        for (const w of [0, 1])
          acc.add(
            honestContribution(
              workerPki[w]!,
              fuzzedEnc,
              voucher.certificate,
              fuzzedLink.publicKey,
              voucher.nonce,
              v,
            ).chunks,
          );
        const a = acc.result();
        acc.dispose();
        return a;
      };
      const seedVoucher = await fuzzedClient.openRound(5);
      const aggregate = await fuzzedAggregate(seedVoucher);
      const certs = [0, 1].map((w) => Buffer.from(workerPki[w]!.certPem));
      const seeds: [string, Buffer][] = [
        [
          SecureAggregationService.submitEncryptedInput.path,
          enc(pb.SubmitEncryptedInputRequest, {
            workerId: 'worker-1',
            round: 0,
            keyId: link.keyId,
            ciphertexts: ct.map((c) => Buffer.from(c)),
            certificate: Buffer.from(workerPki[1]!.certPem),
          }),
        ],
        [
          HeKeyHolderService.decryptSum.path,
          enc(kh.DecryptSumRequest, {
            round: 5,
            contributors: ['worker-0', 'worker-1'],
            keyId: fuzzedLink.keyId,
            length: 8,
            ringBits: 32,
            ciphertexts: aggregate.chunks.map((c) => Buffer.from(c)),
            nonce: Buffer.from(seedVoucher.nonce),
            contributorCertificates: certs,
          }),
        ],
        [HeKeyHolderService.publicKey.path, enc(kh.PublicKeyRequest, {})],
        [HeKeyHolderService.openRound.path, enc(kh.OpenRoundRequest, { round: 9 })],
      ];
      let state = 7654321;
      const rnd = () => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return state / 4294967296;
      };
      const clientFor = (p: string) => (p.startsWith('/tensorguard.v1.HeKeyHolder/') ? rawKh : raw);
      const calls: (() => Promise<void>)[] = [];
      for (let i = 0; i < 400; i++) {
        const [path] = seeds[Math.floor(rnd() * seeds.length)]!;
        const body = Buffer.from(
          Array.from({ length: Math.floor(rnd() * 600) }, () => Math.floor(rnd() * 256)),
        );
        calls.push(async () => {
          const r = await rawCallPath(clientFor(path), path, body, 2000);
          record(r.code, r.details, `random ${path}`);
        });
      }
      for (let i = 0; i < 400; i++) {
        const [path, seed] = seeds[Math.floor(rnd() * seeds.length)]!;
        const body = mutate(seed, rnd);
        calls.push(async () => {
          const r = await rawCallPath(clientFor(path), path, body, 2000);
          record(r.code, r.details, `mutated ${path}`);
        });
      }
      // Structured: valid encodings with hostile field values.
      fc.assert(
        fc.property(
          fc.record({
            workerId: fc.oneof(fc.constantFrom(...f), fc.string({ maxLength: 200 })),
            round: fc.oneof(fc.constant(0), fc.nat()),
            keyId: fc.oneof(
              fc.constant(link.keyId),
              fc.constant(fuzzedLink.keyId),
              fc.string({ maxLength: 20 }),
            ),
            length: fc.oneof(fc.constant(8), fc.nat()),
            bits: fc.oneof(fc.constantFrom(32, 64), fc.nat()),
            blobs: fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 3 }),
            nonce: fc.oneof(fc.constant(Buffer.from(seedVoucher.nonce)), fc.uint8Array({ maxLength: 40 })),
            certificates: fc.array(
              fc.oneof(
                fc.constantFrom(...certs),
                fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
              ),
              { maxLength: 3 },
            ),
          }),
          ({ workerId, round, keyId, length, bits, blobs, nonce, certificates }) => {
            const cts = blobs.map((b) => Buffer.from(b));
            const msgs: [string, Buffer][] = [
              [
                SecureAggregationService.submitEncryptedInput.path,
                enc(pb.SubmitEncryptedInputRequest, {
                  workerId,
                  round,
                  keyId,
                  ciphertexts: cts,
                  certificate: certificates[0] ?? Buffer.alloc(0),
                }),
              ],
              [
                HeKeyHolderService.decryptSum.path,
                enc(kh.DecryptSumRequest, {
                  round,
                  contributors: [workerId, 'x'],
                  keyId,
                  length,
                  ringBits: bits,
                  ciphertexts: cts,
                  nonce: Buffer.from(nonce),
                  contributorCertificates: certificates,
                }),
              ],
              [HeKeyHolderService.openRound.path, enc(kh.OpenRoundRequest, { round })],
            ];
            for (const [path, body] of msgs) {
              calls.push(async () => {
                const r = await rawCallPath(clientFor(path), path, body, 2000);
                record(r.code, r.details, `structured ${path}`);
              });
            }
          },
        ),
        { numRuns: 200 },
      );
      for (let i = 0; i < calls.length; i += 32) await Promise.all(calls.slice(i, i + 32).map((c) => c()));
      expect([...codes.values()].reduce((a, b) => a + b, 0)).to.equal(calls.length);
      expect(calls.length).to.be.at.least(1200);
      await pending;

      // Still healthy: a fresh HE round among new workers sums exactly.
      const g = [4, 5, 6].map((i) => `worker-${i}`);
      const clients = [4, 5, 6].map(
        (i) =>
          new SecureAggClient({ address, workerId: `worker-${i}`, jobIdentity: pki.identity(`worker-${i}`) }),
      );
      for (const c of clients) await c.join();
      const r = server.openRound({ members: g });
      await Promise.all(
        clients.map(async (c, i) =>
          c.contribute(await c.awaitRound(1), encodeIntegers(32, [i, i, 1, 1, -i, 0])),
        ),
      );
      expect(Array.from(toIntegers((await r).ring))).to.deep.equal([3, 3, 3, 3, -3, 0]);
      clients.forEach((c) => c.close());
      // And the fuzzed key holder still decrypts a valid aggregate, under a nonce issued now.
      const fresh = await fuzzedClient.openRound(2 ** 40);
      const sum = await fuzzedClient.decryptSum({
        round: 2 ** 40,
        nonce: fresh.nonce,
        contributors: [0, 1].map((w) => ({ id: `worker-${w}`, certificate: workerPki[w]!.certPem })),
        keyId: fuzzedLink.keyId,
        aggregate: await fuzzedAggregate(fresh),
      });
      expect(Array.from(toIntegers(sum))).to.deep.equal([2, 4, 6, 8, 10, 12]);
    } finally {
      raw.close();
      rawKh.close();
      khClient.close();
      fuzzedClient.close();
      await server.close();
      await holder.close();
      await fuzzedHolder.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
