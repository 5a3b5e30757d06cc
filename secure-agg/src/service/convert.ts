// The one place where generated wire types meet domain types. Each pair xToProto / xFromProto is
// symmetric and round-trip tested (convert.test.ts); FromProto functions validate what the wire
// cannot express (lengths, ranges) and throw MalformedMessageError naming the field.
import { secureAggregation as pb, type heKeyHolder as kh } from '@tensorguard/proto';
import {
  MalformedMessageError,
  HE_CHECK_SLOTS,
  type HeDecryptRequest,
  type HeRoundVoucher,
  type HeEncryptedInput,
  type HePublicKeyInfo,
  ringFromBytes,
  ringToBytes,
  type AdvertiseKeys,
  type EncodingOptions,
  type EncryptedShare,
  type SurvivorAttestation,
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
  /** The key holder's certificate, this round's nonce and its signature over both and the key. */
  voucher: HeRoundVoucher;
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
  /** Training rounds: how each worker encodes and noises its contribution. */
  training?: RoundTraining;
}

/**
 * What a training round announces beyond the secure sum: every field is a privacy parameter a
 * worker checks against its own copy of the job's config (worker-ts's checkAnnouncement).
 */
export interface RoundTraining {
  encoding: EncodingOptions;
  /** Std of each worker's integer noise share, integer units (0: noise off). */
  noiseShareStd: number;
  /** Poisson sampling rate q, in (0, 1]. */
  samplingRate: number;
  /** Per-sample clip norm C. */
  clipNorm: number;
}

/** A model version and its trainable parameters, flattened in weight order (GetModel). */
export interface ModelParameters {
  version: ModelVersionRef;
  parameters: Float32Array;
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
    heKeyHolderCertificate: o.he ? bytes(o.he.voucher.certificate) : Buffer.alloc(0),
    heRoundNonce: o.he ? bytes(o.he.voucher.nonce) : Buffer.alloc(0),
    heRoundSignature: o.he ? bytes(o.he.voucher.signature) : Buffer.alloc(0),
    training: o.training ? trainingToProto(o.training) : undefined,
  };
}

function finite(field: string, v: number, lo: number, loOpen: boolean, hi = Infinity): number {
  if (!Number.isFinite(v) || (loOpen ? v <= lo : v < lo) || v > hi)
    throw new MalformedMessageError(
      `${field} must be a finite number ${loOpen ? '>' : '≥'} ${lo}${hi < Infinity ? ` and ≤ ${hi}` : ''}, got ${v}`,
    );
  return v;
}

export function encodingOptionsToProto(e: EncodingOptions): pb.EncodingOptions {
  return {
    clipNorm: e.clipNorm,
    scale: e.scale,
    workers: e.workers,
    dimension: e.dimension,
    noiseStd: e.noiseStd,
    failureProbability: e.failureProbability,
    bits: e.bits === undefined || e.bits === 'auto' ? 0 : e.bits,
  };
}

/** Validates ranges; whether the values are the job's is the worker's check, not this one's. */
export function encodingOptionsFromProto(m: pb.EncodingOptions | undefined): EncodingOptions {
  if (!m) throw new MalformedMessageError('training.encoding is missing');
  if (m.bits !== 0 && m.bits !== 32 && m.bits !== 64)
    throw new MalformedMessageError(`training.encoding.bits must be 0 (auto), 32 or 64, got ${m.bits}`);
  if (m.workers < 1)
    throw new MalformedMessageError(`training.encoding.workers must be ≥ 1, got ${m.workers}`);
  if (m.dimension < 1)
    throw new MalformedMessageError(`training.encoding.dimension must be ≥ 1, got ${m.dimension}`);
  return {
    clipNorm: finite('training.encoding.clip_norm', m.clipNorm, 0, true),
    scale: finite('training.encoding.scale', m.scale, 0, true),
    workers: m.workers,
    dimension: m.dimension,
    ...(m.noiseStd !== undefined
      ? { noiseStd: finite('training.encoding.noise_std', m.noiseStd, 0, false) }
      : {}),
    ...(m.failureProbability !== undefined
      ? {
          failureProbability: finite(
            'training.encoding.failure_probability',
            m.failureProbability,
            0,
            true,
            1,
          ),
        }
      : {}),
    ...(m.bits !== 0 ? { bits: m.bits } : {}),
  };
}

export function trainingToProto(t: RoundTraining): pb.TrainingParams {
  return {
    encoding: encodingOptionsToProto(t.encoding),
    noiseShareStd: t.noiseShareStd,
    samplingRate: t.samplingRate,
    clipNorm: t.clipNorm,
  };
}

export function trainingFromProto(m: pb.TrainingParams): RoundTraining {
  return {
    encoding: encodingOptionsFromProto(m.encoding),
    noiseShareStd: finite('training.noise_share_std', m.noiseShareStd, 0, false),
    samplingRate: finite('training.sampling_rate', m.samplingRate, 0, true, 1),
    clipNorm: finite('training.clip_norm', m.clipNorm, 0, true),
  };
}

export function survivorAttestationToProto(a: SurvivorAttestation): pb.SurvivorAttestation {
  return { index: a.index, signature: bytes(a.signature) };
}

export function survivorAttestationFromProto(m: pb.SurvivorAttestation | undefined): SurvivorAttestation {
  if (!m) throw new MalformedMessageError('attestation is missing');
  if (m.signature.length === 0) throw new MalformedMessageError('attestation.signature is empty');
  return { index: m.index, signature: Uint8Array.from(m.signature) };
}

export function modelVersionToProto(v: ModelVersionRef): { round: number; fingerprint: string } {
  return { round: v.round, fingerprint: v.fingerprint };
}

export function modelVersionFromProto(
  m: { round: number; fingerprint: string } | undefined,
  field = 'version',
): ModelVersionRef {
  if (!m) throw new MalformedMessageError(`${field} is missing`);
  return { round: m.round, fingerprint: m.fingerprint };
}

export function modelParametersToProto(m: ModelParameters): pb.GetModelResponse {
  const p = m.parameters;
  return {
    version: modelVersionToProto(m.version),
    parameters: {
      name: 'trainable',
      shape: [p.length],
      data: Buffer.from(p.buffer, p.byteOffset, p.byteLength),
    },
  };
}

/** Checks the tensor is one flat float32 vector of `expectedLength` values when given. */
export function modelParametersFromProto(m: pb.GetModelResponse, expectedLength?: number): ModelParameters {
  const t = m.parameters;
  if (!t) throw new MalformedMessageError('parameters are missing');
  if (t.shape.length !== 1 || t.data.length !== 4 * t.shape[0]!)
    throw new MalformedMessageError(
      `parameters must be a flat float32 vector (shape [n], 4·n bytes), got shape [${t.shape.join(', ')}] with ${t.data.length} bytes`,
    );
  if (expectedLength !== undefined && t.shape[0] !== expectedLength)
    throw new MalformedMessageError(`parameters hold ${t.shape[0]} values, the model has ${expectedLength}`);
  const parameters = new Float32Array(t.shape[0]!);
  Buffer.from(parameters.buffer).set(t.data);
  return { version: modelVersionFromProto(m.version), parameters };
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
    if (
      m.heKeyHolderCertificate.length === 0 ||
      m.heRoundNonce.length !== 32 ||
      m.heRoundSignature.length === 0
    )
      throw new MalformedMessageError(
        "an HE round announcement needs the key holder's certificate, a 32-byte he_round_nonce and its signature (he_key_holder_certificate, he_round_nonce, he_round_signature); the aggregator must relay its key holder's OpenRound answer",
      );
    he = {
      publicKey: Uint8Array.from(m.hePublicKey),
      keyId: m.heKeyId,
      encryptedInputMs: m.deadlines.encryptedInputMs,
      voucher: {
        certificate: Uint8Array.from(m.heKeyHolderCertificate),
        nonce: Uint8Array.from(m.heRoundNonce),
        signature: Uint8Array.from(m.heRoundSignature),
      },
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
    ...(m.training ? { training: trainingFromProto(m.training) } : {}),
  };
}

export function advertisedKeysToProto(k: AdvertiseKeys): pb.AdvertisedKeys {
  return {
    index: k.index,
    encryptionKey: bytes(k.encryptionKey),
    maskingKey: bytes(k.maskingKey),
    credential: k.credential ? bytes(k.credential) : Buffer.alloc(0),
    signature: k.signature ? bytes(k.signature) : Buffer.alloc(0),
  };
}

export function advertisedKeysFromProto(m: pb.AdvertisedKeys | undefined): AdvertiseKeys {
  if (!m) throw new MalformedMessageError('keys are missing');
  return {
    index: m.index,
    encryptionKey: Uint8Array.from(m.encryptionKey),
    maskingKey: Uint8Array.from(m.maskingKey),
    ...(m.credential.length > 0 ? { credential: Uint8Array.from(m.credential) } : {}),
    ...(m.signature.length > 0 ? { signature: Uint8Array.from(m.signature) } : {}),
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
  return {
    workerId,
    round,
    keyId: e.keyId,
    ciphertexts: e.chunks.map(bytes),
    certificate: bytes(e.certificate),
  };
}

/** The request's input as the round's member `index` sent it. */
export function encryptedInputFromProto(m: pb.SubmitEncryptedInputRequest, index: number): HeEncryptedInput {
  return {
    index,
    keyId: m.keyId,
    chunks: m.ciphertexts.map((c) => Uint8Array.from(c)),
    certificate: Uint8Array.from(m.certificate),
  };
}

export function roundVoucherToProto(v: HeRoundVoucher): kh.OpenRoundResponse {
  return { nonce: bytes(v.nonce), signature: bytes(v.signature), certificate: bytes(v.certificate) };
}

export function roundVoucherFromProto(m: kh.OpenRoundResponse): HeRoundVoucher {
  if (m.nonce.length !== 32) throw new MalformedMessageError(`nonce must be 32 bytes, got ${m.nonce.length}`);
  if (m.signature.length === 0 || m.certificate.length === 0)
    throw new MalformedMessageError('OpenRoundResponse needs a signature and the certificate');
  return {
    nonce: Uint8Array.from(m.nonce),
    signature: Uint8Array.from(m.signature),
    certificate: Uint8Array.from(m.certificate),
  };
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
    contributors: r.contributors.map((c) => c.id),
    keyId: r.keyId ?? '',
    length: r.aggregate.length,
    ringBits: r.aggregate.bits,
    ciphertexts: r.aggregate.chunks.map(bytes),
    nonce: bytes(r.nonce),
    contributorCertificates: r.contributors.map((c) => bytes(c.certificate)),
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
  if (m.length < 1 + HE_CHECK_SLOTS)
    throw new MalformedMessageError(
      `length must be ≥ ${1 + HE_CHECK_SLOTS} (values and ${HE_CHECK_SLOTS} check slots), got ${m.length}`,
    );
  if (m.nonce.length !== 32)
    throw new MalformedMessageError(
      `round ${m.round}: nonce must be the 32 bytes OpenRound issued, got ${m.nonce.length}`,
    );
  if (m.contributorCertificates.length !== m.contributors.length)
    throw new MalformedMessageError(
      `round ${m.round}: ${m.contributors.length} contributors but ${m.contributorCertificates.length} contributor_certificates; send one certificate per contributor, in order`,
    );
  return {
    round: m.round,
    nonce: Uint8Array.from(m.nonce),
    contributors: m.contributors.map((id, i) => ({
      id,
      certificate: Uint8Array.from(m.contributorCertificates[i]!),
    })),
    keyId: m.keyId,
    aggregate: { chunks: m.ciphertexts.map((c) => Uint8Array.from(c)), length: m.length, bits: m.ringBits },
  };
}

/** The decrypted sum (without its check slots) and how many contributions it holds. */
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
