import { expect } from 'chai';
import { newSessionId, type AdvertiseKeys, type EncryptedShare, type UnmaskShares } from '../index.js';
import {
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
