import { expect } from 'chai';
import { secureAggregation as pb } from '@tensorguard/proto';
import {
  newSessionId,
  type AdvertiseKeys,
  type EncodingOptions,
  type EncryptedShare,
  type SurvivorAttestation,
  type UnmaskShares,
} from '../index.js';
import {
  decryptRequestFromProto,
  decryptRequestToProto,
  roundVoucherFromProto,
  roundVoucherToProto,
  decryptResponseFromProto,
  decryptResponseToProto,
  encryptedInputFromProto,
  encryptedInputToProto,
  publicKeyInfoFromProto,
  publicKeyInfoToProto,
  advertisedKeysFromProto,
  advertisedKeysToProto,
  encryptedShareFromProto,
  encryptedShareToProto,
  maskedVectorFromProto,
  maskedVectorToProto,
  encodingOptionsFromProto,
  encodingOptionsToProto,
  modelParametersFromProto,
  modelParametersToProto,
  roundOpenFromProto,
  roundOpenToProto,
  survivorAttestationFromProto,
  survivorAttestationToProto,
  trainingFromProto,
  trainingToProto,
  unmaskSharesFromProto,
  unmaskSharesToProto,
  type ModelParameters,
  type RoundOpen,
  type RoundTraining,
} from './convert.js';

/** Through the wire: encode with the generated codec, decode it back. */
function viaBytes<T>(t: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): T }, m: T): T {
  return t.decode(t.encode(m).finish());
}

describe('service/convert: training messages, through bytes', () => {
  const training: RoundTraining = {
    encoding: {
      clipNorm: 1.5,
      scale: 4096,
      workers: 5,
      dimension: 1234,
      noiseStd: 0.75,
      failureProbability: 1e-9,
      bits: 64,
    },
    noiseShareStd: 1536.25,
    samplingRate: 0.01,
    clipNorm: 1.5,
  };
  const open: RoundOpen = {
    scheme: 'masking',
    params: {
      sessionId: newSessionId(),
      round: 7,
      members: ['worker-0', 'worker-1', 'worker-2'],
      vectorLength: 1234,
      bits: 64,
      threshold: 2,
      degree: 2,
      graphSeed: newSessionId(),
      minInputs: 2,
    },
    deadlinesMs: { ADVERTISE_KEYS: 1, SHARE_KEYS: 2, MASKED_INPUT: 3, UNMASK: 4 },
    modelVersion: { round: 6, fingerprint: 'ef'.repeat(32) },
    training,
  };

  it('round-trips a training announcement, masking and HE, and one without training', () => {
    expect(roundOpenFromProto(viaBytes(pb.RoundAnnouncement, roundOpenToProto(open)))).to.deep.equal(open);
    const he: RoundOpen = {
      ...open,
      scheme: 'he',
      he: {
        publicKey: new Uint8Array(64).fill(3),
        keyId: 'fedcba9876543210',
        encryptedInputMs: 9,
        voucher: {
          certificate: new Uint8Array([1, 2]),
          nonce: new Uint8Array(32).fill(4),
          signature: new Uint8Array([3]),
        },
      },
    };
    expect(roundOpenFromProto(viaBytes(pb.RoundAnnouncement, roundOpenToProto(he)))).to.deep.equal(he);
    const plain: RoundOpen = { ...open };
    delete plain.training;
    const back = roundOpenFromProto(viaBytes(pb.RoundAnnouncement, roundOpenToProto(plain)));
    expect(back).to.deep.equal(plain);
    expect(back).to.not.have.property('training');
  });

  it('round-trips encoding options, with the optional fields absent and bits auto', () => {
    const minimal: EncodingOptions = { clipNorm: 2, scale: 10, workers: 1, dimension: 1 };
    for (const e of [training.encoding, minimal, { ...minimal, bits: 32 as const }])
      expect(encodingOptionsFromProto(viaBytes(pb.EncodingOptions, encodingOptionsToProto(e)))).to.deep.equal(
        e,
      );
    // 'auto' is the wire's 0, which reads back as absent (the same plan).
    expect(encodingOptionsFromProto(encodingOptionsToProto({ ...minimal, bits: 'auto' }))).to.deep.equal(
      minimal,
    );
    expect(trainingFromProto(viaBytes(pb.TrainingParams, trainingToProto(training)))).to.deep.equal(training);
  });

  it('refuses training values the domain cannot hold, naming the field', () => {
    const m = trainingToProto(training);
    const cases: [pb.TrainingParams, string][] = [
      [{ ...m, noiseShareStd: -0.5 }, 'training.noise_share_std must be a finite number ≥ 0, got -0.5'],
      [{ ...m, samplingRate: 0 }, 'training.sampling_rate must be a finite number > 0 and ≤ 1, got 0'],
      [{ ...m, clipNorm: Number.NaN }, 'training.clip_norm must be a finite number > 0, got NaN'],
      [{ ...m, encoding: undefined }, 'training.encoding is missing'],
      [
        { ...m, encoding: { ...m.encoding!, bits: 16 } },
        'training.encoding.bits must be 0 (auto), 32 or 64, got 16',
      ],
      [{ ...m, encoding: { ...m.encoding!, workers: 0 } }, 'training.encoding.workers must be ≥ 1, got 0'],
      [
        { ...m, encoding: { ...m.encoding!, scale: -1 } },
        'training.encoding.scale must be a finite number > 0, got -1',
      ],
      [
        { ...m, encoding: { ...m.encoding!, failureProbability: 2 } },
        'training.encoding.failure_probability must be a finite number > 0 and ≤ 1, got 2',
      ],
    ];
    for (const [bad, msg] of cases) expect(() => trainingFromProto(bad), msg).to.throw(msg);
  });

  it('round-trips signed advertised keys and survivor attestations', () => {
    const k: AdvertiseKeys = {
      index: 2,
      encryptionKey: new Uint8Array(32).fill(1),
      maskingKey: new Uint8Array(32).fill(2),
      credential: new Uint8Array(300).fill(3),
      signature: new Uint8Array(71).fill(4),
    };
    expect(advertisedKeysFromProto(viaBytes(pb.AdvertisedKeys, advertisedKeysToProto(k)))).to.deep.equal(k);
    const a: SurvivorAttestation = { index: 1, signature: new Uint8Array(70).fill(5) };
    expect(
      survivorAttestationFromProto(viaBytes(pb.SurvivorAttestation, survivorAttestationToProto(a))),
    ).to.deep.equal(a);
    expect(() => survivorAttestationFromProto({ index: 1, signature: Buffer.alloc(0) })).to.throw(
      'attestation.signature is empty',
    );
    expect(() => survivorAttestationFromProto(undefined)).to.throw('attestation is missing');
  });

  it('round-trips model parameters and checks their shape', () => {
    const m: ModelParameters = {
      version: { round: 4, fingerprint: '01'.repeat(32) },
      parameters: Float32Array.from([0.25, -3.5, 1e-7, 42]),
    };
    expect(
      modelParametersFromProto(viaBytes(pb.GetModelResponse, modelParametersToProto(m)), 4),
    ).to.deep.equal(m);
    // A view into a larger buffer encodes only its own values.
    const view: ModelParameters = {
      ...m,
      parameters: new Float32Array(Float32Array.from([9, 1, 2, 9]).buffer, 4, 2),
    };
    expect(Array.from(modelParametersFromProto(modelParametersToProto(view)).parameters)).to.deep.equal([
      1, 2,
    ]);
    expect(() => modelParametersFromProto(modelParametersToProto(m), 5)).to.throw(
      'parameters hold 4 values, the model has 5',
    );
    const bad = modelParametersToProto(m);
    expect(() =>
      modelParametersFromProto({
        ...bad,
        parameters: { ...bad.parameters!, data: bad.parameters!.data.subarray(1) },
      }),
    ).to.throw(
      'parameters must be a flat float32 vector (shape [n], 4·n bytes), got shape [4] with 15 bytes',
    );
    expect(() => modelParametersFromProto({ version: bad.version, parameters: undefined })).to.throw(
      'parameters are missing',
    );
  });
});

describe('service/convert', () => {
  it('round-trips a round announcement', () => {
    const o: RoundOpen = {
      scheme: 'masking',
      params: {
        sessionId: newSessionId(),
        round: 12,
        members: ['a', 'b', 'c'],
        vectorLength: 10,
        bits: 64,
        threshold: 2,
        degree: 2,
        graphSeed: newSessionId(),
        minInputs: 2,
      },
      deadlinesMs: { ADVERTISE_KEYS: 1, SHARE_KEYS: 2, MASKED_INPUT: 3, UNMASK: 4 },
      modelVersion: { round: 11, fingerprint: 'ab' },
    };
    expect(roundOpenFromProto(roundOpenToProto(o))).to.deep.equal(o);
    expect(roundOpenFromProto(roundOpenToProto({ ...o, modelVersion: undefined })).modelVersion).to.equal(
      undefined,
    );
    expect(() => roundOpenFromProto({ ...roundOpenToProto(o), ringBits: 16 })).to.throw(
      'ring_bits must be 32 or 64, got 16',
    );
    const he: RoundOpen = {
      ...o,
      scheme: 'he',
      he: {
        publicKey: new Uint8Array(40).fill(9),
        keyId: '0123456789abcdef',
        encryptedInputMs: 5,
        voucher: {
          certificate: new Uint8Array([1, 2]),
          nonce: new Uint8Array(32).fill(4),
          signature: new Uint8Array([3]),
        },
      },
    };
    expect(roundOpenFromProto(roundOpenToProto(he))).to.deep.equal(he);
    expect(() => roundOpenFromProto({ ...roundOpenToProto(he), heKeyId: '' })).to.throw(
      'an HE round announcement needs he_public_key and a 16-hex-digit he_key_id',
    );
    expect(() => roundOpenFromProto({ ...roundOpenToProto(he), heRoundNonce: Buffer.alloc(31) })).to.throw(
      /needs the key holder's certificate, a 32-byte he_round_nonce and its signature/,
    );
    expect(() => roundOpenFromProto({ ...roundOpenToProto(he), heRoundSignature: Buffer.alloc(0) })).to.throw(
      /needs the key holder's certificate, a 32-byte he_round_nonce and its signature/,
    );
    expect(() => roundOpenFromProto({ ...roundOpenToProto(o), scheme: 7 as pb.AggregationScheme })).to.throw(
      'unknown aggregation scheme 7; update this worker',
    );
  });

  it('round-trips encrypted inputs, public keys and decryption requests', () => {
    const e = {
      index: 2,
      keyId: '0123456789abcdef',
      chunks: [new Uint8Array([1, 2]), new Uint8Array([3])],
      certificate: new Uint8Array([8, 9]),
    };
    expect(encryptedInputFromProto(encryptedInputToProto('w', 4, e), 2)).to.deep.equal(e);
    const k = { publicKey: new Uint8Array([5, 6]), keyId: 'fedcba9876543210', minInputs: 3 };
    expect(publicKeyInfoFromProto(publicKeyInfoToProto(k))).to.deep.equal(k);
    expect(() => publicKeyInfoFromProto({ ...publicKeyInfoToProto(k), minInputs: 1 })).to.throw(
      'min_inputs must be ≥ 2, got 1',
    );
    const d = {
      round: 3,
      nonce: new Uint8Array(32).fill(1),
      contributors: [
        { id: 'a', certificate: new Uint8Array([1]) },
        { id: 'b', certificate: new Uint8Array([2]) },
      ],
      keyId: k.keyId,
      aggregate: { chunks: [new Uint8Array([7])], length: 5, bits: 32 as const },
    };
    expect(decryptRequestFromProto(decryptRequestToProto(d))).to.deep.equal(d);
    expect(() =>
      decryptRequestFromProto({ ...decryptRequestToProto(d), contributorCertificates: [Buffer.from([1])] }),
    ).to.throw(/2 contributors but 1 contributor_certificates/);
    const v = {
      nonce: new Uint8Array(32).fill(5),
      signature: new Uint8Array([6]),
      certificate: new Uint8Array([7]),
    };
    expect(roundVoucherFromProto(roundVoucherToProto(v))).to.deep.equal(v);
    expect(() => roundVoucherFromProto({ ...roundVoucherToProto(v), nonce: Buffer.alloc(8) })).to.throw(
      'nonce must be 32 bytes, got 8',
    );
    expect(() => decryptRequestFromProto({ ...decryptRequestToProto(d), ringBits: 8 })).to.throw(
      'ring_bits must be 32 or 64, got 8',
    );
    const sum = Uint32Array.from([1, 2, 2 ** 32 - 1]);
    expect(decryptResponseFromProto(decryptResponseToProto(sum, 2), 32, 3)).to.deep.equal({
      sum,
      contributions: 2,
    });
  });

  it('round-trips keys, shares, vectors and unmask shares', () => {
    const k: AdvertiseKeys = {
      index: 3,
      encryptionKey: new Uint8Array(32).fill(1),
      maskingKey: new Uint8Array(32).fill(2),
    };
    expect(advertisedKeysFromProto(advertisedKeysToProto(k))).to.deep.equal(k);
    const s: EncryptedShare = { from: 1, to: 2, ciphertext: new Uint8Array(92).fill(5) };
    expect(encryptedShareFromProto(encryptedShareToProto(s))).to.deep.equal(s);
    const v = BigUint64Array.from([1n, 2n ** 64n - 1n]);
    expect(maskedVectorFromProto(maskedVectorToProto(v), 64, 2)).to.deep.equal(v);
    expect(() => maskedVectorFromProto(maskedVectorToProto(v), 64, 3)).to.throw(
      'a vector of 3 64-bit words is 24 bytes, got 16',
    );
    const u: UnmaskShares = {
      index: 4,
      selfMaskShares: [{ owner: 1, share: new Uint8Array(32).fill(7) }],
      maskingKeyShares: [{ owner: 2, share: new Uint8Array(32).fill(8) }],
    };
    expect(unmaskSharesFromProto(unmaskSharesToProto(u), 4)).to.deep.equal(u);
  });
});
