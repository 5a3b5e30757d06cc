// The HE key holder's rules, independent of any transport: the only party with the BFV secret key
// publishes the public key, issues one signed nonce per round (openRound) and decrypts only
// aggregates: a sum over at least `minInputs` (≥ 2) distinct contributors, each named with a job
// certificate (CN = its id), at most once per nonce it issued. Before returning anything it
// removes exactly those contributors' pads (he-pad.ts) and checks that the check slots are zero.
//
// Trust assumption: the key holder and the aggregator do not collude. The aggregator sees every
// worker's ciphertext but has no key; the key holder has the key but sees only aggregates. The
// key holder is honest but curious; the aggregator may be actively malicious: whatever it sends,
// what the key holder releases for a nonce carries, of the workers' inputs, only the sum over the
// declared contributors (docs/secure-aggregation.md, HE mode, has the argument). The gRPC service
// (service/key-holder-server.ts) uses this class, so the rules exist once.
import { createHash, randomBytes } from 'node:crypto';
import {
  ConfigError,
  DecryptionPolicyError,
  MalformedMessageError,
  PermissionError,
  SecAggError,
} from './errors.js';
import {
  HE_CHECK_SLOTS,
  heKeyDigest,
  hePads,
  heRoundStatement,
  JobPki,
  KEY_HOLDER_NAME,
  residuesToRing,
  subModP,
  type JobIdentity,
} from './he-pad.js';
import { HeKeyHolder } from './he.js';
import type { RingBits, RingVector } from './masking.js';

/** First 16 hex digits of SHA-256(publicKey): names the key in logs and round messages. */
export function keyIdOf(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/** One contributor of an aggregate: its worker id and its job certificate (PEM). */
export interface HeContributor {
  id: string;
  certificate: Uint8Array;
}

/** One decryption request: a round's aggregate and who contributed to it. */
export interface HeDecryptRequest {
  /** For messages; the nonce is what is decrypted once. */
  round: number;
  /** The nonce openRound issued for this round. */
  nonce: Uint8Array;
  /** The distinct workers whose ciphertexts the aggregate sums. */
  contributors: HeContributor[];
  /** Key id the aggregate is encrypted under; checked when given. */
  keyId?: string;
  /** The homomorphic sum: `length` slots (the vector and HE_CHECK_SLOTS), ring width `bits`. */
  aggregate: { chunks: Uint8Array[]; length: number; bits: RingBits };
}

/** What the key holder publishes. */
export interface HePublicKeyInfo {
  publicKey: Uint8Array;
  keyId: string;
  /** Fewest distinct contributors a decrypted sum may hold. */
  minInputs: number;
}

/** A round's nonce as the key holder vouches for it (relayed to workers in the announcement). */
export interface HeRoundVoucher {
  nonce: Uint8Array;
  /** The key holder's signature over heRoundStatement(publicKey, round, nonce). */
  signature: Uint8Array;
  /** The key holder's job certificate (PEM). */
  certificate: Uint8Array;
}

export class HeKeyService {
  readonly #holder: HeKeyHolder;
  readonly #pki: JobPki;
  readonly keyId: string;
  readonly #keyDigest: Buffer;
  /** Nonces issued and not yet asked for (hex → round). */
  readonly #open = new Map<string, number>();
  /** Nonces asked for (refused requests included): a second sum would reveal a difference. */
  readonly #used = new Set<string>();
  /** Pad keys by certificate bytes. */
  readonly #padKeys = new Map<string, Buffer>();

  private constructor(holder: HeKeyHolder, pki: JobPki) {
    this.#holder = holder;
    this.#pki = pki;
    this.keyId = keyIdOf(holder.publicKey);
    this.#keyDigest = heKeyDigest(holder.publicKey);
  }

  /**
   * A fresh key pair, held under the job identity `identity` (its certificate must name
   * KEY_HOLDER_NAME). Throws ConfigError unless minInputs is an integer ≥ 2 (the key holder never
   * decrypts one worker's ciphertext) or for an identity that is not the key holder's,
   * UnavailableError when node-seal cannot load.
   */
  static async create(minInputs: number, identity: JobIdentity): Promise<HeKeyService> {
    if (!Number.isSafeInteger(minInputs) || minInputs < 2) {
      throw new ConfigError(
        'minInputs',
        `must be an integer ≥ 2 (the key holder never decrypts one worker's ciphertext), got ${minInputs}`,
      );
    }
    const pki = new JobPki(identity);
    if (pki.name !== KEY_HOLDER_NAME)
      throw new ConfigError(
        'identity',
        `the key holder's certificate must name ${KEY_HOLDER_NAME}, this one names ${JSON.stringify(pki.name ?? null)}; pass the key holder's --tls-dir (pki.py writes it)`,
      );
    return new HeKeyService(await HeKeyHolder.create(minInputs), pki);
  }

  get minInputs(): number {
    return this.#holder.minInputs;
  }

  get certificate(): Uint8Array {
    return this.#pki.certPem;
  }

  publicKey(): HePublicKeyInfo {
    return { publicKey: this.#holder.publicKey, keyId: this.keyId, minInputs: this.minInputs };
  }

  /** A fresh nonce for `round`, signed together with the round and the key's digest. */
  openRound(round: number): HeRoundVoucher {
    if (!Number.isSafeInteger(round) || round < 0)
      throw new MalformedMessageError(`round must be an integer ≥ 0, got ${round}`);
    const nonce = new Uint8Array(randomBytes(32));
    this.#open.set(Buffer.from(nonce).toString('hex'), round);
    const signature = this.#pki.sign(heRoundStatement(this.#holder.publicKey, round, nonce));
    return { nonce, signature, certificate: this.#pki.certPem };
  }

  #padKey(c: HeContributor, round: number): Buffer {
    const k = Buffer.from(c.certificate).toString('latin1');
    let key = this.#padKeys.get(k);
    if (key === undefined) {
      let cert;
      try {
        cert = this.#pki.member(c.certificate, c.id);
      } catch (err) {
        if (!(err instanceof PermissionError)) throw err;
        throw new DecryptionPolicyError(
          `round ${round}: contributor ${c.id}: ${err.message}; nothing is decrypted`,
          {
            round,
            rule: 'CONTRIBUTOR_CERTIFICATE',
          },
        );
      }
      key = this.#pki.padKey(cert);
      this.#padKeys.set(k, key);
    }
    return key;
  }

  /**
   * Decrypts an aggregate, removes the contributors' pads and returns the ring sum without the
   * check slots. Throws MalformedMessageError for a malformed request (contributors not distinct,
   * a length below 1 + HE_CHECK_SLOTS, the wrong number of ciphertexts, bytes that do not decrypt
   * under this key) and DecryptionPolicyError for fewer than minInputs contributors, another key
   * id, a nonce not issued or already asked for (refused requests included), a contributor
   * certificate not of this job or not naming that contributor, or check slots that are not zero;
   * nothing is returned then.
   */
  decryptSum(req: HeDecryptRequest): RingVector {
    const { round, contributors, aggregate } = req;
    const ctx = { round };
    if (!Number.isSafeInteger(round) || round < 0)
      throw new MalformedMessageError(`round must be an integer ≥ 0, got ${round}`);
    const nonceHex = Buffer.from(req.nonce).toString('hex');
    if (this.#used.has(nonceHex)) {
      throw new DecryptionPolicyError(
        `round ${round}: this nonce was already decrypted (or refused); each nonce's sum is decrypted at most once, since a second sum over a subset would reveal the difference`,
        { ...ctx, rule: 'ONCE_PER_NONCE' },
      );
    }
    if (!this.#open.has(nonceHex)) {
      throw new DecryptionPolicyError(
        `round ${round}: this key holder did not issue the nonce; ask OpenRound for one and announce it to the workers`,
        { ...ctx, rule: 'UNKNOWN_NONCE' },
      );
    }
    // From here on the nonce is spent, whatever the outcome.
    this.#open.delete(nonceHex);
    this.#used.add(nonceHex);
    if (new Set(contributors.map((c) => c.id)).size !== contributors.length)
      throw new MalformedMessageError(`round ${round}: contributors must be distinct`, ctx);
    if (!Number.isSafeInteger(aggregate.length) || aggregate.length < 1 + HE_CHECK_SLOTS)
      throw new MalformedMessageError(
        `round ${round}: the aggregate length must be an integer ≥ ${1 + HE_CHECK_SLOTS} (values and ${HE_CHECK_SLOTS} check slots)`,
        ctx,
      );
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
    const keys = contributors.map((c) => this.#padKey(c, round));
    let plain: BigUint64Array;
    try {
      plain = this.#holder.decryptResidues(aggregate.chunks, aggregate.length);
    } catch (err) {
      if (err instanceof SecAggError) throw new MalformedMessageError(`round ${round}: ${err.message}`, ctx);
      throw new MalformedMessageError(
        `round ${round}: the aggregate does not decrypt under this key (${err instanceof Error ? err.message : String(err)})`,
        { ...ctx, cause: err },
      );
    }
    for (const k of keys) subModP(plain, hePads(k, this.#keyDigest, req.nonce, aggregate.length));
    const d = aggregate.length - HE_CHECK_SLOTS;
    if (!plain.subarray(d).every((v) => v === 0n)) {
      plain.fill(0n);
      throw new DecryptionPolicyError(
        `round ${round}: the aggregate is not the sum of the ${contributors.length} declared contributors' inputs under this round's nonce (its check slots are not zero); nothing is returned`,
        { ...ctx, rule: 'CHECK_SLOTS' },
      );
    }
    return residuesToRing(plain.subarray(0, d), aggregate.bits);
  }
}
