// The HE key holder's rules, independent of any transport: the only party with the BFV secret key
// publishes the public key and decrypts only aggregates — a sum of at least `minInputs` (≥ 2)
// distinct contributors, once per round number, whose count slot (he-contribution.ts) confirms the
// declared number of contributions. It never receives a single worker's ciphertext from an honest
// coordinator, and refuses to return one that a coordinator passes off as a sum.
//
// Trust assumption: the key holder and the coordinator do not collude. The coordinator sees every
// worker's ciphertext but has no key; the key holder has the key but sees only aggregates. Both
// are honest but curious (they follow the protocol); the key holder also learns each released
// noisy sum, which the coordinator learns anyway. The gRPC service (service/key-holder-server.ts)
// and worker-ts's coordinator both use this class, so the rules exist once.
import { createHash } from 'node:crypto';
import { ConfigError, DecryptionPolicyError, MalformedMessageError, SecAggError } from './errors.js';
import { splitCountSlot } from './he-contribution.js';
import { HeKeyHolder, type HeAggregate } from './he.js';
import type { RingVector } from './masking.js';

/** First 16 hex digits of SHA-256(publicKey): names the key in logs and round messages. */
export function keyIdOf(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/** One decryption request: a round's aggregate and who contributed to it. */
export interface HeDecryptRequest {
  round: number;
  /** The distinct worker ids whose ciphertexts the aggregate sums. */
  contributors: string[];
  /** Key id the aggregate is encrypted under; checked when given. */
  keyId?: string;
  /** The homomorphic sum; its last slot is the count slot, `inputs` the number of contributors. */
  aggregate: HeAggregate;
}

/** What the key holder publishes. */
export interface HePublicKeyInfo {
  publicKey: Uint8Array;
  keyId: string;
  /** Fewest distinct contributors a decrypted sum may hold. */
  minInputs: number;
}

export class HeKeyService {
  readonly #holder: HeKeyHolder;
  readonly keyId: string;
  /** Rounds whose sum was asked for: a second sum over another subset would reveal the difference. */
  readonly #rounds = new Set<number>();

  private constructor(holder: HeKeyHolder) {
    this.#holder = holder;
    this.keyId = keyIdOf(holder.publicKey);
  }

  /**
   * A fresh key pair. Throws ConfigError('minInputs') unless minInputs is an integer ≥ 2 (the key
   * holder never decrypts one worker's ciphertext), UnavailableError when node-seal cannot load.
   */
  static async create(minInputs: number): Promise<HeKeyService> {
    if (!Number.isSafeInteger(minInputs) || minInputs < 2) {
      throw new ConfigError(
        'minInputs',
        `must be an integer ≥ 2 (the key holder never decrypts one worker's ciphertext), got ${minInputs}`,
      );
    }
    return new HeKeyService(await HeKeyHolder.create(minInputs));
  }

  get minInputs(): number {
    return this.#holder.minInputs;
  }

  publicKey(): HePublicKeyInfo {
    return { publicKey: this.#holder.publicKey, keyId: this.keyId, minInputs: this.minInputs };
  }

  /**
   * Decrypts an aggregate to the ring sum without its count slot. Throws MalformedMessageError for
   * a malformed request (contributors not distinct, inputs ≠ contributors, wrong number of
   * ciphertexts, bytes that do not decrypt under this key) and DecryptionPolicyError for fewer
   * than minInputs contributors, another key id, a round already asked for (refused requests
   * included), or a count slot that disagrees with the declared contributors; nothing is returned
   * then.
   */
  decryptSum(req: HeDecryptRequest): RingVector {
    const { round, contributors, aggregate } = req;
    const ctx = { round };
    if (!Number.isSafeInteger(round) || round < 0)
      throw new MalformedMessageError(`round must be an integer ≥ 0, got ${round}`);
    if (new Set(contributors).size !== contributors.length)
      throw new MalformedMessageError(`round ${round}: contributors must be distinct`, ctx);
    if (aggregate.inputs !== contributors.length) {
      throw new MalformedMessageError(
        `round ${round}: aggregate.inputs (${aggregate.inputs}) differs from the ${contributors.length} contributors`,
        ctx,
      );
    }
    if (!Number.isSafeInteger(aggregate.length) || aggregate.length < 2)
      throw new MalformedMessageError(`round ${round}: the aggregate length must be an integer ≥ 2`, ctx);
    if (req.keyId !== undefined && req.keyId !== this.keyId) {
      throw new DecryptionPolicyError(
        `round ${round}: the aggregate is under key ${JSON.stringify(req.keyId)}, but this key holder holds ${this.keyId}`,
        { ...ctx, rule: 'KEY_ID' },
      );
    }
    if (contributors.length < this.minInputs) {
      throw new DecryptionPolicyError(
        `round ${round}: the key holder decrypts only sums of ≥ ${this.minInputs} contributions, got ${contributors.length}`,
        { ...ctx, rule: 'MIN_INPUTS' },
      );
    }
    if (this.#rounds.has(round)) {
      throw new DecryptionPolicyError(
        `round ${round} was already decrypted (or refused); each round's sum is decrypted at most once, since a second sum over a subset would reveal the difference`,
        { ...ctx, rule: 'ONCE_PER_ROUND' },
      );
    }
    this.#rounds.add(round);
    let plain: RingVector;
    try {
      plain = this.#holder.decryptSum(aggregate);
    } catch (err) {
      if (err instanceof SecAggError) throw new MalformedMessageError(`round ${round}: ${err.message}`, ctx);
      throw new MalformedMessageError(
        `round ${round}: the aggregate does not decrypt under this key (${err instanceof Error ? err.message : String(err)})`,
        { ...ctx, cause: err },
      );
    }
    const { sum, count } = splitCountSlot(plain);
    if (count !== contributors.length) {
      throw new DecryptionPolicyError(
        `round ${round}: the aggregate holds ${count} contribution(s), not the ${contributors.length} declared; nothing is returned`,
        { ...ctx, rule: 'COUNT_SLOT' },
      );
    }
    return sum;
  }
}
