import { expect } from 'chai';
import { type secureAggregation as pb } from '@tensorguard/proto';
import { newSessionId, type AdvertiseKeys, type EncryptedShare, type UnmaskShares } from '../index.js';
import {
  decryptRequestFromProto,
  decryptRequestToProto,
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
  roundOpenFromProto,
  roundOpenToProto,
  unmaskSharesFromProto,
  unmaskSharesToProto,
  type RoundOpen,
} from './convert.js';

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
      he: { publicKey: new Uint8Array(40).fill(9), keyId: '0123456789abcdef', encryptedInputMs: 5 },
    };
    expect(roundOpenFromProto(roundOpenToProto(he))).to.deep.equal(he);
    expect(() => roundOpenFromProto({ ...roundOpenToProto(he), heKeyId: '' })).to.throw(
      'an HE round announcement needs he_public_key and a 16-hex-digit he_key_id',
    );
    expect(() => roundOpenFromProto({ ...roundOpenToProto(o), scheme: 7 as pb.AggregationScheme })).to.throw(
      'unknown aggregation scheme 7; update this worker',
    );
  });

  it('round-trips encrypted inputs, public keys and decryption requests', () => {
    const e = { index: 2, keyId: '0123456789abcdef', chunks: [new Uint8Array([1, 2]), new Uint8Array([3])] };
    expect(encryptedInputFromProto(encryptedInputToProto('w', 4, e), 2)).to.deep.equal(e);
    const k = { publicKey: new Uint8Array([5, 6]), keyId: 'fedcba9876543210', minInputs: 3 };
    expect(publicKeyInfoFromProto(publicKeyInfoToProto(k))).to.deep.equal(k);
    expect(() => publicKeyInfoFromProto({ ...publicKeyInfoToProto(k), minInputs: 1 })).to.throw(
      'min_inputs must be ≥ 2, got 1',
    );
    const d = {
      round: 3,
      contributors: ['a', 'b'],
      keyId: k.keyId,
      aggregate: { chunks: [new Uint8Array([7])], inputs: 2, length: 5, bits: 32 as const },
    };
    expect(decryptRequestFromProto(decryptRequestToProto(d))).to.deep.equal(d);
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
