// The one place where generated wire types meet domain types. Each pair xToProto / xFromProto is
// symmetric and round-trip tested (convert.test.ts); FromProto functions validate what the wire
// cannot express (lengths, ranges) and throw MalformedMessageError naming the field.
import { secureAggregation as pb, type heKeyHolder as kh } from '@tensorguard/proto';
import {
  MalformedMessageError,
  type HeAggregate,
  type HeDecryptRequest,
  type HeEncryptedInput,
  type HePublicKeyInfo,
  ringFromBytes,
  ringToBytes,
  type AdvertiseKeys,
  type EncryptedShare,
  type RevealedShare,
  type RingBits,
  type RingVector,
  type RoundParams,
  type StageDeadlinesMs,
  type UnmaskShares,
} from '../index.js';

/** A model version as the coordinator names it. */
export interface ModelVersionRef {
  /** Round after which the version was produced (0 = initial). */
  round: number;
  /** sha256 of the serialized parameters, hex. */
  fingerprint: string;
}

/** How a job's sums are protected: pairwise masking, or HE under a separate key holder's key. */
export type AggregationScheme = 'masking' | 'he';

/** HE rounds: the key to encrypt under and the deadline of the one input stage. */
export interface HeRoundKey {
  /** The key holder's BFV public key. */
  publicKey: Uint8Array;
  /** keyIdOf(publicKey). */
  keyId: string;
  /** Deadline of the SubmitEncryptedInput stage, ms from when the round opens. */
  encryptedInputMs: number;
}

/** What a worker learns when a round opens. */
export interface RoundOpen {
  scheme: AggregationScheme;
  /** For scheme 'masking' all of it; for 'he' the round, members, vector length and ring width. */
  params: RoundParams;
  deadlinesMs: StageDeadlinesMs;
  modelVersion: ModelVersionRef | undefined;
  /** Present exactly when scheme is 'he'. */
  he?: HeRoundKey;
}

function bytes(v: Uint8Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function roundOpenToProto(o: RoundOpen): pb.RoundAnnouncement {
  const p = o.params;
  return {
    round: p.round,
    sessionId: bytes(p.sessionId),
    members: [...p.members],
    vectorLength: p.vectorLength,
    ringBits: p.bits,
    threshold: p.threshold,
    degree: p.degree,
    graphSeed: bytes(p.graphSeed),
    minInputs: p.minInputs,
    modelVersion: o.modelVersion
      ? { round: o.modelVersion.round, fingerprint: o.modelVersion.fingerprint }
      : undefined,
    deadlines: {
      advertiseKeysMs: o.deadlinesMs.ADVERTISE_KEYS,
      shareKeysMs: o.deadlinesMs.SHARE_KEYS,
      maskedInputMs: o.deadlinesMs.MASKED_INPUT,
      unmaskMs: o.deadlinesMs.UNMASK,
      encryptedInputMs: o.he?.encryptedInputMs ?? 0,
    },
    scheme:
      o.scheme === 'he'
        ? pb.AggregationScheme.AGGREGATION_SCHEME_HE
        : pb.AggregationScheme.AGGREGATION_SCHEME_MASKING,
    hePublicKey: o.he ? bytes(o.he.publicKey) : Buffer.alloc(0),
    heKeyId: o.he?.keyId ?? '',
  };
}

export function roundOpenFromProto(m: pb.RoundAnnouncement): RoundOpen {
  if (m.ringBits !== 32 && m.ringBits !== 64) {
    throw new MalformedMessageError(`ring_bits must be 32 or 64, got ${m.ringBits}`);
  }
  if (!m.deadlines) throw new MalformedMessageError('a round announcement needs deadlines');
  let he: HeRoundKey | undefined;
  if (m.scheme === pb.AggregationScheme.AGGREGATION_SCHEME_HE) {
    if (m.hePublicKey.length === 0 || !/^[0-9a-f]{16}$/.test(m.heKeyId))
      throw new MalformedMessageError(
        'an HE round announcement needs he_public_key and a 16-hex-digit he_key_id',
      );
    if (m.deadlines.encryptedInputMs < 1)
      throw new MalformedMessageError('an HE round announcement needs deadlines.encrypted_input_ms ≥ 1');
    he = {
      publicKey: Uint8Array.from(m.hePublicKey),
      keyId: m.heKeyId,
      encryptedInputMs: m.deadlines.encryptedInputMs,
    };
  } else if (m.scheme !== pb.AggregationScheme.AGGREGATION_SCHEME_MASKING) {
    throw new MalformedMessageError(`unknown aggregation scheme ${m.scheme}; update this worker`);
  }
  return {
    scheme: he ? 'he' : 'masking',
    ...(he ? { he } : {}),
    params: {
      sessionId: Uint8Array.from(m.sessionId),
      round: m.round,
      members: [...m.members],
      vectorLength: m.vectorLength,
      bits: m.ringBits,
      threshold: m.threshold,
      degree: m.degree,
      graphSeed: Uint8Array.from(m.graphSeed),
      minInputs: m.minInputs,
    },
    deadlinesMs: {
      ADVERTISE_KEYS: m.deadlines.advertiseKeysMs,
      SHARE_KEYS: m.deadlines.shareKeysMs,
      MASKED_INPUT: m.deadlines.maskedInputMs,
      UNMASK: m.deadlines.unmaskMs,
    },
    modelVersion: m.modelVersion
      ? { round: m.modelVersion.round, fingerprint: m.modelVersion.fingerprint }
      : undefined,
  };
}

export function advertisedKeysToProto(k: AdvertiseKeys): pb.AdvertisedKeys {
  return { index: k.index, encryptionKey: bytes(k.encryptionKey), maskingKey: bytes(k.maskingKey) };
}

export function advertisedKeysFromProto(m: pb.AdvertisedKeys | undefined): AdvertiseKeys {
  if (!m) throw new MalformedMessageError('keys are missing');
  return {
    index: m.index,
    encryptionKey: Uint8Array.from(m.encryptionKey),
    maskingKey: Uint8Array.from(m.maskingKey),
  };
}

export function encryptedShareToProto(s: EncryptedShare): pb.EncryptedShare {
  return { fromIndex: s.from, toIndex: s.to, ciphertext: bytes(s.ciphertext) };
}

export function encryptedShareFromProto(m: pb.EncryptedShare): EncryptedShare {
  return { from: m.fromIndex, to: m.toIndex, ciphertext: Uint8Array.from(m.ciphertext) };
}

export function maskedVectorToProto(v: RingVector): Buffer {
  return bytes(ringToBytes(v));
}

export function maskedVectorFromProto(b: Uint8Array, bits: RingBits, length: number): RingVector {
  return ringFromBytes(b, bits, length);
}

export function revealedShareToProto(s: RevealedShare): pb.RevealedShare {
  return { owner: s.owner, share: bytes(s.share) };
}

export function revealedShareFromProto(m: pb.RevealedShare): RevealedShare {
  return { owner: m.owner, share: Uint8Array.from(m.share) };
}

/** The unmask payload (the request also carries worker id and round, set by the caller). */
export function unmaskSharesToProto(
  u: UnmaskShares,
): Pick<pb.UnmaskRequest, 'selfMaskShares' | 'maskingKeyShares'> {
  return {
    selfMaskShares: u.selfMaskShares.map(revealedShareToProto),
    maskingKeyShares: u.maskingKeyShares.map(revealedShareToProto),
  };
}

export function unmaskSharesFromProto(
  m: Pick<pb.UnmaskRequest, 'selfMaskShares' | 'maskingKeyShares'>,
  index: number,
): UnmaskShares {
  return {
    index,
    selfMaskShares: m.selfMaskShares.map(revealedShareFromProto),
    maskingKeyShares: m.maskingKeyShares.map(revealedShareFromProto),
  };
}

export function encryptedInputToProto(
  workerId: string,
  round: number,
  e: Omit<HeEncryptedInput, 'index'>,
): pb.SubmitEncryptedInputRequest {
  return { workerId, round, keyId: e.keyId, ciphertexts: e.chunks.map(bytes) };
}

/** The request's input as the round's member `index` sent it. */
export function encryptedInputFromProto(m: pb.SubmitEncryptedInputRequest, index: number): HeEncryptedInput {
  return { index, keyId: m.keyId, chunks: m.ciphertexts.map((c) => Uint8Array.from(c)) };
}

export function publicKeyInfoToProto(k: HePublicKeyInfo): kh.PublicKeyResponse {
  return { publicKey: bytes(k.publicKey), keyId: k.keyId, minInputs: k.minInputs };
}

export function publicKeyInfoFromProto(m: kh.PublicKeyResponse): HePublicKeyInfo {
  if (m.publicKey.length === 0) throw new MalformedMessageError('public_key is empty');
  if (!/^[0-9a-f]{16}$/.test(m.keyId))
    throw new MalformedMessageError(
      `key_id must be 16 hex digits, got ${JSON.stringify(m.keyId.slice(0, 40))}`,
    );
  if (m.minInputs < 2) throw new MalformedMessageError(`min_inputs must be ≥ 2, got ${m.minInputs}`);
  return { publicKey: Uint8Array.from(m.publicKey), keyId: m.keyId, minInputs: m.minInputs };
}

export function decryptRequestToProto(r: HeDecryptRequest): kh.DecryptSumRequest {
  return {
    round: r.round,
    contributors: [...r.contributors],
    keyId: r.keyId ?? '',
    length: r.aggregate.length,
    ringBits: r.aggregate.bits,
    ciphertexts: r.aggregate.chunks.map(bytes),
  };
}

/** Validates what the wire cannot express; the key holder's own rules are HeKeyService's. */
export function decryptRequestFromProto(m: kh.DecryptSumRequest): HeDecryptRequest {
  if (m.ringBits !== 32 && m.ringBits !== 64)
    throw new MalformedMessageError(`ring_bits must be 32 or 64, got ${m.ringBits}`);
  if (m.keyId === '')
    throw new MalformedMessageError(
      `round ${m.round}: key_id is required (the key holder's PublicKeyResponse.key_id)`,
    );
  if (m.length < 2)
    throw new MalformedMessageError(`length must be ≥ 2 (values and the count slot), got ${m.length}`);
  const aggregate: HeAggregate = {
    chunks: m.ciphertexts.map((c) => Uint8Array.from(c)),
    inputs: m.contributors.length,
    length: m.length,
    bits: m.ringBits,
  };
  return { round: m.round, contributors: [...m.contributors], keyId: m.keyId, aggregate };
}

/** The decrypted sum (without its count slot) and how many contributions it holds. */
export function decryptResponseToProto(sum: RingVector, contributions: number): kh.DecryptSumResponse {
  return { sum: bytes(ringToBytes(sum)), contributions };
}

export function decryptResponseFromProto(
  m: kh.DecryptSumResponse,
  bits: RingBits,
  length: number,
): { sum: RingVector; contributions: number } {
  return { sum: ringFromBytes(m.sum, bits, length), contributions: m.contributions };
}
