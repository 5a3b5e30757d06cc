// The HE key holder: the only party with the BFV secret key. It publishes the public key and
// decrypts only aggregates: a sum declared to hold at least `minInputs` (the job's threshold t ≥ 2)
// distinct contributors, once per round number, whose count slot (contribution.ts) confirms the
// declared number of contributions. It never receives a single worker's ciphertext from an honest
// coordinator, and refuses to return one that a coordinator passes off as a sum.
//
// Trust assumption: the key holder and the coordinator do not collude. The coordinator sees every
// worker's ciphertext but has no key; the key holder has the key but sees only aggregates. Both
// are honest but curious (they follow the protocol); the key holder also learns each released
// noisy sum, which the coordinator learns anyway.
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import {
  HeKeyHolder,
  SecAggError,
  type HeAggregate,
  type RingBits,
  type RingVector,
} from '@tensorguard/secure-agg';
import { RpcClient, RpcError, type Handler, type RpcService } from '../coordinator/rpc.js';
import { splitCountSlot } from './contribution.js';

export type KeyHolderMethod = 'PublicKey' | 'DecryptSum';
export const KEY_HOLDER_SERVICE: RpcService<KeyHolderMethod> = {
  name: 'tensorguard.worker.v1.KeyHolderService',
  methods: ['PublicKey', 'DecryptSum'],
};

export interface PublicKeyResponse {
  publicKey: Uint8Array;
  /** First 16 hex digits of SHA-256(publicKey): names the key in logs and round messages. */
  keyId: string;
  minInputs: number;
}

export interface DecryptSumRequest {
  round: number;
  /** The distinct worker ids whose ciphertexts the aggregate sums. */
  contributors: string[];
  /** The homomorphic sum; its last slot is the count slot. */
  aggregate: HeAggregate;
}

export interface DecryptSumResponse {
  /** The ring sum without the count slot. */
  sum: RingVector;
}

export function keyIdOf(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/** The key holder's state and request checks, behind its gRPC service. */
export class KeyHolderService {
  readonly #holder: HeKeyHolder;
  readonly keyId: string;
  /** Rounds whose sum was asked for: a second sum over another subset would reveal the difference. */
  readonly #rounds = new Set<number>();

  private constructor(holder: HeKeyHolder) {
    this.#holder = holder;
    this.keyId = keyIdOf(holder.publicKey);
  }

  /** A fresh key pair. Throws ConfigError (secure-agg) unless minInputs ≥ 2. */
  static async create(minInputs: number): Promise<KeyHolderService> {
    if (!Number.isSafeInteger(minInputs) || minInputs < 2) {
      throw new RangeError(
        `minInputs must be an integer ≥ 2 (the key holder never decrypts one worker's ciphertext), got ${minInputs}`,
      );
    }
    return new KeyHolderService(await HeKeyHolder.create(minInputs));
  }

  get minInputs(): number {
    return this.#holder.minInputs;
  }

  publicKey(): PublicKeyResponse {
    return { publicKey: this.#holder.publicKey, keyId: this.keyId, minInputs: this.minInputs };
  }

  /**
   * Decrypts an aggregate. Throws RpcError: INVALID_ARGUMENT for a malformed request,
   * FAILED_PRECONDITION for fewer than minInputs contributors, a round already asked for, or a
   * count slot that disagrees with the declared contributors (then nothing is returned).
   */
  decryptSum(raw: unknown): DecryptSumResponse {
    const req = checkRequest(raw);
    const { round, contributors, aggregate } = req;
    if (contributors.length < this.minInputs) {
      throw new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `round ${round}: the key holder decrypts only sums of ≥ ${this.minInputs} contributions, got ${contributors.length}`,
      );
    }
    if (this.#rounds.has(round)) {
      throw new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `round ${round} was already decrypted (or refused); each round's sum is decrypted at most once, since a second sum over a subset would reveal the difference`,
      );
    }
    this.#rounds.add(round);
    let plain: RingVector;
    try {
      plain = this.#holder.decryptSum(aggregate);
    } catch (err) {
      if (err instanceof SecAggError) throw new RpcError(grpc.status.INVALID_ARGUMENT, err.message);
      throw new RpcError(
        grpc.status.INVALID_ARGUMENT,
        `round ${round}: the aggregate does not decrypt under this key (${err instanceof Error ? err.message : String(err)})`,
      );
    }
    const { sum, count } = splitCountSlot(plain);
    if (count !== contributors.length) {
      throw new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `round ${round}: the aggregate holds ${count} contribution(s), not the ${contributors.length} declared; nothing is returned`,
      );
    }
    return { sum };
  }

  handlers(): Record<KeyHolderMethod, Handler> {
    return {
      PublicKey: () => Promise.resolve(this.publicKey()),
      DecryptSum: (req) => Promise.resolve().then(() => this.decryptSum(req)),
    };
  }
}

function bad(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

function checkRequest(raw: unknown): DecryptSumRequest {
  if (typeof raw !== 'object' || raw === null) throw bad('DecryptSum: the request must be an object');
  const r = raw as Record<string, unknown>;
  if (!Number.isSafeInteger(r.round) || (r.round as number) < 0)
    throw bad('DecryptSum: round must be an integer ≥ 0');
  const round = r.round as number;
  const contributors = r.contributors;
  if (!Array.isArray(contributors) || !contributors.every((c) => typeof c === 'string'))
    throw bad(`round ${round}: contributors must be a list of worker ids`);
  if (new Set(contributors).size !== contributors.length)
    throw bad(`round ${round}: contributors must be distinct`);
  const a = r.aggregate as Record<string, unknown> | null;
  if (typeof a !== 'object' || a === null) throw bad(`round ${round}: aggregate must be an object`);
  if (!Array.isArray(a.chunks) || !a.chunks.every((c) => c instanceof Uint8Array))
    throw bad(`round ${round}: aggregate.chunks must be a list of byte strings`);
  if (!Number.isSafeInteger(a.length) || (a.length as number) < 2)
    throw bad(`round ${round}: aggregate.length must be an integer ≥ 2`);
  if (a.bits !== 32 && a.bits !== 64) throw bad(`round ${round}: aggregate.bits must be 32 or 64`);
  if (a.inputs !== contributors.length) {
    throw bad(
      `round ${round}: aggregate.inputs (${String(a.inputs)}) differs from the ${contributors.length} contributors`,
    );
  }
  return {
    round,
    contributors: contributors as string[],
    aggregate: {
      chunks: a.chunks as Uint8Array[],
      inputs: a.inputs,
      length: a.length as number,
      bits: a.bits as RingBits,
    },
  };
}

/** The coordinator's side: fetches the public key and asks for aggregates to be decrypted. */
export class KeyHolderClient {
  readonly #rpc: RpcClient<KeyHolderMethod>;
  constructor(readonly address: string) {
    this.#rpc = new RpcClient(KEY_HOLDER_SERVICE, address);
  }

  /** Retries UNAVAILABLE until `waitMs` (a key holder that is still starting). */
  async publicKey(waitMs = 30_000): Promise<PublicKeyResponse> {
    const giveUp = Date.now() + waitMs;
    for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
      try {
        const res = await this.#rpc.call<PublicKeyResponse>('PublicKey', {}, 10_000);
        if (!(res.publicKey instanceof Uint8Array) || keyIdOf(res.publicKey) !== res.keyId)
          throw new Error(`the key holder at ${this.address} sent a malformed public key`);
        return res;
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if (code !== grpc.status.UNAVAILABLE || Date.now() > giveUp) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async decryptSum(req: DecryptSumRequest, deadlineMs = 120_000): Promise<RingVector> {
    const res = await this.#rpc.call<DecryptSumResponse>('DecryptSum', req, deadlineMs);
    return res.sum;
  }

  close(): void {
    this.#rpc.close();
  }
}
