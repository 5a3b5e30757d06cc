// The one place where generated wire types meet domain types. Each pair xToProto / xFromProto is
// symmetric and round-trip tested (convert.test.ts); FromProto functions validate what the wire
// cannot express (lengths, ranges) and throw MalformedMessageError naming the field.
import { type secureAggregation as pb } from '@tensorguard/proto';
import {
  MalformedMessageError,
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

/** What a worker learns when a round opens. */
export interface RoundOpen {
  params: RoundParams;
  deadlinesMs: StageDeadlinesMs;
  modelVersion: ModelVersionRef | undefined;
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
    },
  };
}

export function roundOpenFromProto(m: pb.RoundAnnouncement): RoundOpen {
  if (m.ringBits !== 32 && m.ringBits !== 64) {
    throw new MalformedMessageError(`ring_bits must be 32 or 64, got ${m.ringBits}`);
  }
  if (!m.deadlines) throw new MalformedMessageError('a round announcement needs deadlines');
  return {
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
