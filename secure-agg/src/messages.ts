// The domain messages of one secure-aggregation round and the parameters both sides agree on.
// These are plain values; the gRPC edge converts them to and from the wire types in
// service/convert.ts and nothing else in this package sees generated code.
import { ConfigError } from './errors.js';
import type { RoundContext } from './keys.js';
import type { RingBits, RingVector } from './masking.js';
import { neighbourGraph } from './secagg-plus.js';

/** The stages of a round, in order, plus the two terminal states. */
export type Stage = 'ADVERTISE_KEYS' | 'SHARE_KEYS' | 'MASKED_INPUT' | 'UNMASK' | 'DONE' | 'ABORTED';
/** The four stages that accept messages, in protocol order. */
export const STAGES = ['ADVERTISE_KEYS', 'SHARE_KEYS', 'MASKED_INPUT', 'UNMASK'] as const;
export type ActiveStage = (typeof STAGES)[number];

/** What every participant of a round must agree on; sent by the aggregator when a round opens. */
export interface RoundParams {
  /** Random per-session identifier (≥ 16 bytes), bound into every derived key. */
  sessionId: Uint8Array;
  /** Round number (non-negative safe integer). */
  round: number;
  /** Worker ids in roster order; a worker's index is its position here. */
  members: readonly string[];
  /** Length d of the integer vectors summed. */
  vectorLength: number;
  /** Ring width k of the vectors. */
  bits: RingBits;
  /** Shares needed to rebuild any one worker's secret (t). Must exceed half its holders. */
  threshold: number;
  /** Neighbours per worker; members.length - 1 (or more) means the complete graph (Bonawitz). */
  degree: number;
  /** Public seed (≥ 16 bytes) of the SecAgg+ neighbour graph; ignored for the complete graph. */
  graphSeed: Uint8Array;
  /** Fewest inputs a released sum may contain; rounds with fewer survivors abort. */
  minInputs: number;
}

/** A round's parameters after validation, with the derived neighbour graph. */
export interface CompiledRound extends RoundParams {
  readonly ctx: RoundContext;
  readonly n: number;
  /** neighbours[i]: sorted indices masked against and holding i's shares (excluding i). */
  readonly neighbours: readonly (readonly number[])[];
  /** holders[i]: neighbours[i] ∪ {i}, sorted; the evaluation point of holder j is j + 1. */
  readonly holders: readonly (readonly number[])[];
}

/** Stage 1 (worker → aggregator): the worker's two fresh public keys for this round. */
export interface AdvertiseKeys {
  index: number;
  /** X25519 public key for the share channel (c_u^PK), 32 bytes. */
  encryptionKey: Uint8Array;
  /** X25519 public key for pairwise masks (s_u^PK), 32 bytes. */
  maskingKey: Uint8Array;
  /**
   * With identities (RoundIdentity): the worker's credential (its job certificate) and its
   * signature over both keys in this round's context, so that the aggregator cannot substitute
   * keys of its own (a man in the middle of every pairwise agreement).
   */
  credential?: Uint8Array;
  signature?: Uint8Array;
}

/**
 * A worker's long-term identity in a job (the job's certificate and key; worker-ts builds it from
 * `--tls-dir`). With identities, advertised keys are signed and checked, and a worker reveals
 * unmask shares only for the survivor set it signed, once more than half of all members (and at
 * least the Shamir threshold) signed it too (the consistency check of Bonawitz et al. 2017,
 * round 3 of the actively secure protocol).
 */
export interface RoundIdentity {
  /** What others verify this worker's signatures with (its certificate). */
  readonly credential: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
  /**
   * True when `credential` is a valid credential of member `memberId` of this job (issued by the
   * job's authority, naming that member) and `signature` is its signature over `data`.
   */
  verify(memberId: string, credential: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
}

/** Consistency check (worker → aggregator → every survivor): a survivor's signature over U3. */
export interface SurvivorAttestation {
  index: number;
  /** Signature over (context, sorted survivor indices). */
  signature: Uint8Array;
}

/** One Shamir share bundle, AES-GCM encrypted from `from` to `to`. */
export interface EncryptedShare {
  from: number;
  to: number;
  /** nonce ‖ ciphertext ‖ tag of (masking-key share ‖ self-mask-seed share), 92 bytes. */
  ciphertext: Uint8Array;
}

/** Stage 2 (worker → aggregator): one encrypted share bundle per other holder. */
export interface ShareKeys {
  index: number;
  shares: EncryptedShare[];
}

/** Stage 3 (worker → aggregator): x_u + PRG(b_u) + Σ ±PRG(s_uv) in Z_2^k. */
export interface MaskedInput {
  index: number;
  vector: RingVector;
}

/** A plaintext Shamir share of `owner`'s secret, as revealed in the unmask stage. */
export interface RevealedShare {
  owner: number;
  /** f(holder + 1), 32 bytes. */
  share: Uint8Array;
}

/** Stage 4 (worker → aggregator): self-mask shares of survivors, key shares of dropouts. */
export interface UnmaskShares {
  index: number;
  /** Shares of b_v for every owner v that survived the masked-input stage. */
  selfMaskShares: RevealedShare[];
  /** Shares of s_v^SK for every owner v that shared keys but sent no masked input. */
  maskingKeyShares: RevealedShare[];
}

/** The aggregator's broadcast after stage 1: everyone's advertised keys (the set U1). */
export type KeyRoster = AdvertiseKeys[];

/** The outcome of a round: only the sum, and who is in it. */
export interface RoundResult {
  round: number;
  /** Σ_{u ∈ survivors} x_u in Z_2^k (read it with toSigned or decode). */
  sum: RingVector;
  /** Indices whose inputs are in the sum (U3), sorted. */
  survivors: number[];
  /** Worker ids of the survivors, same order. */
  survivorIds: string[];
}

function int(field: string, v: number, lo: number, hi: number): void {
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new ConfigError(field, `must be an integer in [${lo}, ${hi}], got ${v}`);
  }
}

/**
 * Validates round parameters and derives the neighbour graph. Throws ConfigError naming the
 * field (thresholds at most half of a worker's holders are refused: see docs/secure-aggregation.md).
 */
export function compileRound(params: RoundParams): CompiledRound {
  const n = params.members.length;
  int('members.length', n, 2, 1 << 20);
  if (new Set(params.members).size !== n) throw new ConfigError('members', 'worker ids must be distinct');
  int('round', params.round, 0, Number.MAX_SAFE_INTEGER);
  int('vectorLength', params.vectorLength, 1, 1 << 28);
  if (params.bits !== 32 && params.bits !== 64)
    throw new ConfigError('bits', `must be 32 or 64, got ${String(params.bits)}`);
  if (params.sessionId.length < 16)
    throw new ConfigError('sessionId', `must be ≥ 16 bytes, got ${params.sessionId.length}`);
  const degree = Math.min(params.degree, n - 1);
  int('degree', degree, 1, n - 1);
  if (degree < n - 1 && (degree % 2 !== 0 || degree < 2)) {
    throw new ConfigError('degree', `a sparse graph needs an even degree ≥ 2, got ${degree}`);
  }
  if (degree < n - 1 && params.graphSeed.length < 16) {
    throw new ConfigError('graphSeed', `must be ≥ 16 bytes, got ${params.graphSeed.length}`);
  }
  const holderCount = degree + 1;
  int('threshold', params.threshold, Math.floor(holderCount / 2) + 1, holderCount);
  int('minInputs', params.minInputs, 1, n);
  const neighbours = neighbourGraph(n, degree, params.graphSeed);
  const holders = neighbours.map((ns, i) => [...ns, i].sort((a, b) => a - b));
  return {
    ...params,
    degree,
    n,
    neighbours,
    holders,
    ctx: { sessionId: params.sessionId, round: params.round },
  };
}
