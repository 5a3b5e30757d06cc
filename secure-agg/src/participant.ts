// The worker's side of one round (Bonawitz et al. 2017, honest-but-curious server), as a state
// machine: INIT → ADVERTISED → SHARED → SUBMITTED → UNMASKED, or ABORTED. Each method produces
// the worker's next message from the aggregator's last one and refuses to run out of order.
//
// Key setup (advertiseKeys, shareKeys, receiveShares) needs no input vector, so a worker can run
// round r+1's setup while it computes round r's gradient; maskInput then needs only the vector.
import { randomBytes } from 'node:crypto';
import {
  DuplicateMessageError,
  MalformedMessageError,
  RoundAbortedError,
  SharePolicyError,
  StageError,
  ThresholdError,
} from './errors.js';
import {
  agree,
  decryptFromPeer,
  deriveKey,
  encryptForPeer,
  generateKeyPair,
  KEY_BYTES,
  type KeyPair,
} from './keys.js';
import {
  addMasksFrom,
  allocRingForOverwrite,
  ringBitsOf,
  type RingVector,
  type SignedMask,
} from './masking.js';
import type {
  AdvertiseKeys,
  CompiledRound,
  EncryptedShare,
  KeyRoster,
  MaskedInput,
  RevealedShare,
  RoundIdentity,
  ShareKeys,
  SurvivorAttestation,
  UnmaskShares,
} from './messages.js';
import { FIELD_BYTES, randomFieldElement, fieldToBytes, splitSecret } from './shamir.js';

/**
 * INIT → ADVERTISED (keys sent) → SHARED (shares sent) → READY (shares received; key setup done)
 * → SUBMITTED (masked input sent) → UNMASKED, or ABORTED from any state.
 */
export type ParticipantState =
  'INIT' | 'ADVERTISED' | 'SHARED' | 'READY' | 'SUBMITTED' | 'UNMASKED' | 'ABORTED';

interface HeldShares {
  maskingKey: Uint8Array;
  selfMask: Uint8Array;
}

/** Plaintext of one share bundle: masking-key share ‖ self-mask-seed share. */
const BUNDLE_BYTES = 2 * FIELD_BYTES;

/** What a signature covers: a label, the round's session id and number, then the payload. */
function transcript(label: string, round: CompiledRound, ...parts: Uint8Array[]): Uint8Array {
  const head = Buffer.from(`tensorguard-secagg/${label}\0`);
  const r = Buffer.alloc(8);
  r.writeBigUInt64BE(BigInt(round.round));
  return Buffer.concat([head, round.sessionId, r, ...parts]);
}

/** The bytes a worker signs over its advertised keys. */
export function advertiseTranscript(
  round: CompiledRound,
  k: Pick<AdvertiseKeys, 'index' | 'encryptionKey' | 'maskingKey'>,
): Uint8Array {
  const i = Buffer.alloc(4);
  i.writeUInt32BE(k.index);
  return transcript('advertise', round, i, k.encryptionKey, k.maskingKey);
}

/** The bytes a survivor signs over the survivor set U3 it was told (sorted, 4 bytes each). */
export function survivorsTranscript(round: CompiledRound, survivors: readonly number[]): Uint8Array {
  const sorted = [...survivors].sort((a, b) => a - b);
  const b = Buffer.alloc(4 * sorted.length);
  sorted.forEach((v, i) => b.writeUInt32BE(v, 4 * i));
  return transcript('survivors', round, b);
}

export interface ParticipantOptions {
  /**
   * This worker's job identity. With it, advertised keys are signed and every roster entry must
   * carry a valid signature of its member; unmask shares are revealed only for a survivor set
   * that at least `threshold` of its members attested. Without it (tests, one trusted host), the
   * honest-but-curious protocol.
   */
  identity?: RoundIdentity;
}

export class RoundParticipant {
  readonly round: CompiledRound;
  readonly index: number;
  #state: ParticipantState = 'INIT';
  readonly #encryption: KeyPair = generateKeyPair();
  readonly #masking: KeyPair = generateKeyPair();
  /** Self-mask seed b_u, a field element so it can be Shamir-shared. */
  readonly #selfMask: Uint8Array = fieldToBytes(randomFieldElement());
  #roster = new Map<number, AdvertiseKeys>();
  /** Shares this worker holds, by owner (including its own), once shares were received. */
  #held = new Map<number, HeldShares>();
  #ownShares: HeldShares | undefined;
  /** Neighbours that shared keys with this worker: its pairwise masks are against exactly these. */
  #maskedWith: number[] = [];
  #unmaskAnswer: { survivors: string; response: UnmaskShares } | undefined;
  readonly #identity: RoundIdentity | undefined;
  /** The survivor set this worker attested (signed), once: it never signs another this round. */
  #attested: { survivors: string; attestation: SurvivorAttestation } | undefined;

  constructor(round: CompiledRound, index: number, options: ParticipantOptions = {}) {
    if (!Number.isSafeInteger(index) || index < 0 || index >= round.n) {
      throw new MalformedMessageError(`worker index ${index} is not in the roster of ${round.n}`);
    }
    this.round = round;
    this.index = index;
    this.#identity = options.identity;
  }

  get state(): ParticipantState {
    return this.#state;
  }

  #expect(state: ParticipantState, action: string): void {
    if (this.#state !== state) {
      throw new StageError(`cannot ${action} in state ${this.#state} (expected ${state})`, {
        round: this.round.round,
        stage: this.#state,
        expected: state,
      });
    }
  }

  #fail(err: Error): never {
    this.#state = 'ABORTED';
    throw err;
  }

  readonly #channelKeys = new Map<number, Uint8Array>();

  /** The AES-256-GCM key shared with `peer` (HKDF of X25519(c_u, c_peer)), cached per round. */
  #channelKey(peer: number, peerKey: Uint8Array): Uint8Array {
    let key = this.#channelKeys.get(peer);
    if (!key) {
      key = deriveKey(agree(this.#encryption.privateKey, peerKey), this.round.ctx, 'share-encryption');
      this.#channelKeys.set(peer, key);
    }
    return key;
  }

  /** Stage 1: fresh X25519 public keys for the share channel and for pairwise masks. */
  advertiseKeys(): AdvertiseKeys {
    this.#expect('INIT', 'advertise keys');
    this.#state = 'ADVERTISED';
    const keys = {
      index: this.index,
      encryptionKey: this.#encryption.publicKey,
      maskingKey: this.#masking.publicKey,
    };
    if (!this.#identity) return keys;
    return {
      ...keys,
      credential: this.#identity.credential,
      signature: this.#identity.sign(advertiseTranscript(this.round, keys)),
    };
  }

  /**
   * Stage 2: given the roster U1, Shamir-shares s_u^SK and b_u among this worker's holders that
   * are in U1 (t-of-holders) and encrypts each holder's pair of shares to it. Throws
   * MalformedMessageError when the roster misstates this worker's keys or has invalid entries,
   * ThresholdError when fewer than t of its holders advertised.
   */
  shareKeys(roster: KeyRoster): ShareKeys {
    this.#expect('ADVERTISED', 'share keys');
    const map = new Map<number, AdvertiseKeys>();
    for (const k of roster) {
      if (!Number.isSafeInteger(k.index) || k.index < 0 || k.index >= this.round.n) {
        this.#fail(
          new MalformedMessageError(`roster names index ${k.index}, outside 0..${this.round.n - 1}`, {
            round: this.round.round,
          }),
        );
      }
      if (map.has(k.index))
        this.#fail(
          new DuplicateMessageError(`roster lists index ${k.index} twice`, { round: this.round.round }),
        );
      if (k.encryptionKey.length !== KEY_BYTES || k.maskingKey.length !== KEY_BYTES) {
        this.#fail(
          new MalformedMessageError(`roster keys of index ${k.index} are not ${KEY_BYTES} bytes`, {
            round: this.round.round,
          }),
        );
      }
      if (this.#identity) {
        const member = this.round.members[k.index]!;
        const signed =
          k.credential !== undefined &&
          k.signature !== undefined &&
          this.#identity.verify(member, k.credential, advertiseTranscript(this.round, k), k.signature);
        if (!signed) {
          this.#fail(
            new SharePolicyError(
              `the roster's keys for index ${k.index} (${member}) are not signed by that member's job identity; the aggregator may be substituting keys`,
              { round: this.round.round },
            ),
          );
        }
      }
      map.set(k.index, k);
    }
    const me = map.get(this.index);
    if (
      !me ||
      !Buffer.from(me.maskingKey).equals(this.#masking.publicKey) ||
      !Buffer.from(me.encryptionKey).equals(this.#encryption.publicKey)
    ) {
      this.#fail(
        new MalformedMessageError('the roster does not carry this worker’s own keys', {
          round: this.round.round,
        }),
      );
    }
    if (map.size < this.round.minInputs) {
      this.#fail(
        new ThresholdError(
          `only ${map.size} workers advertised keys; at least ${this.round.minInputs} are required`,
          { round: this.round.round, survivors: map.size, threshold: this.round.minInputs },
        ),
      );
    }
    const holders = this.round.holders[this.index]!.filter((h) => map.has(h));
    if (holders.length < this.round.threshold) {
      this.#fail(
        new ThresholdError(
          `only ${holders.length} of this worker's share holders advertised keys; ${this.round.threshold} are required`,
          { round: this.round.round, survivors: holders.length, threshold: this.round.threshold },
        ),
      );
    }
    this.#roster = map;
    const xs = holders.map((h) => h + 1);
    const keyShares = splitSecret(this.#masking.privateKey, xs, this.round.threshold);
    const seedShares = splitSecret(this.#selfMask, xs, this.round.threshold);
    const shares: EncryptedShare[] = [];
    holders.forEach((h, i) => {
      const bundle = { maskingKey: keyShares[i]!.y, selfMask: seedShares[i]!.y };
      if (h === this.index) {
        this.#ownShares = bundle;
        return;
      }
      const key = this.#channelKey(h, map.get(h)!.encryptionKey);
      const plain = new Uint8Array(BUNDLE_BYTES);
      plain.set(bundle.maskingKey, 0);
      plain.set(bundle.selfMask, FIELD_BYTES);
      shares.push({
        from: this.index,
        to: h,
        ciphertext: encryptForPeer(key, this.round.ctx, this.index, h, plain),
      });
    });
    this.#state = 'SHARED';
    return { index: this.index, shares };
  }

  /**
   * Takes the share bundles addressed to this worker (from the set U2 of workers that shared
   * keys), decrypts and keeps them. The senders become this worker's pairwise-mask partners.
   * Throws ShareDecryptionError for a bundle that does not authenticate and MalformedMessageError
   * for one that is misaddressed, duplicated or from a non-neighbour.
   */
  receiveShares(incoming: readonly EncryptedShare[]): void {
    this.#expect('SHARED', 'receive shares');
    const mine = new Set(this.round.neighbours[this.index]);
    const held = new Map<number, HeldShares>();
    for (const s of incoming) {
      if (s.to !== this.index)
        this.#fail(
          new MalformedMessageError(
            `a share addressed to index ${s.to} was delivered to index ${this.index}`,
            { round: this.round.round },
          ),
        );
      if (!mine.has(s.from))
        this.#fail(
          new MalformedMessageError(`a share from index ${s.from}, which is not a neighbour`, {
            round: this.round.round,
          }),
        );
      if (held.has(s.from))
        this.#fail(new DuplicateMessageError(`two shares from index ${s.from}`, { round: this.round.round }));
      const peer = this.#roster.get(s.from);
      if (!peer)
        this.#fail(
          new MalformedMessageError(`a share from index ${s.from}, which did not advertise keys`, {
            round: this.round.round,
          }),
        );
      const key = this.#channelKey(s.from, peer.encryptionKey);
      let plain: Uint8Array;
      try {
        plain = decryptFromPeer(key, this.round.ctx, s.from, this.index, s.ciphertext);
      } catch (err) {
        this.#fail(err as Error);
      }
      if (plain.length !== BUNDLE_BYTES)
        this.#fail(
          new MalformedMessageError(`a share bundle from index ${s.from} has ${plain.length} bytes`, {
            round: this.round.round,
          }),
        );
      held.set(s.from, { maskingKey: plain.slice(0, FIELD_BYTES), selfMask: plain.slice(FIELD_BYTES) });
    }
    // The graph is symmetric, so the neighbours that shared with this worker are exactly the
    // holders of its own shares that are still in the round.
    if (held.size + 1 < this.round.threshold) {
      this.#fail(
        new ThresholdError(
          `only ${held.size + 1} of this worker's share holders are left after key sharing; ${this.round.threshold} are required`,
          { round: this.round.round, survivors: held.size + 1, threshold: this.round.threshold },
        ),
      );
    }
    held.set(this.index, this.#ownShares!);
    this.#held = held;
    this.#maskedWith = [...held.keys()].filter((j) => j !== this.index).sort((a, b) => a - b);
    this.#state = 'READY';
  }

  /**
   * Stage 3: y_u = x_u + PRG(b_u) + Σ_{v partner} ±PRG(s_uv) (+ when u < v), in Z_2^k. `input` is
   * the already-encoded vector; it is not modified. Needs receiveShares first.
   */
  maskInput(input: RingVector): MaskedInput {
    this.#expect('READY', 'mask the input');
    if (input.length !== this.round.vectorLength || ringBitsOf(input) !== this.round.bits) {
      throw new MalformedMessageError(
        `expected a ${this.round.bits}-bit vector of length ${this.round.vectorLength}, got ${ringBitsOf(input)}-bit of length ${input.length}`,
        { round: this.round.round },
      );
    }
    const y = allocRingForOverwrite(this.round.bits, input.length); // addMasksFrom writes all of it
    const masks: SignedMask[] = [{ seed: this.#selfMask, sign: 1 }];
    for (const v of this.#maskedWith) {
      const seed = deriveKey(
        agree(this.#masking.privateKey, this.#roster.get(v)!.maskingKey),
        this.round.ctx,
        'pairwise-mask',
      );
      masks.push({ seed, sign: this.index < v ? 1 : -1 });
    }
    addMasksFrom(y, input, masks, this.round.ctx); // one pass, input to y, for all of them
    this.#state = 'SUBMITTED';
    return { index: this.index, vector: y };
  }

  /** Convenience for in-process use: receiveShares then maskInput. */
  maskInputWithShares(incoming: readonly EncryptedShare[], input: RingVector): MaskedInput {
    this.receiveShares(incoming);
    return this.maskInput(input);
  }

  /**
   * Stage 4: given the survivor set U3, reveals the self-mask share of each held owner in U3 and
   * the masking-key share of each held owner not in U3, never both for one owner. Answers once per
   * round: a repeat of the same request gets the same answer, a different one a SharePolicyError
   * (an aggregator that told different workers different survivor sets could otherwise collect
   * both kinds of share for one worker). With an identity, also the consistency check: U3 must be
   * the set this worker attested, signed by at least `threshold` of its members (`attestations`).
   * Throws ThresholdError when U3 is smaller than minInputs, SharePolicyError when the check fails.
   */
  /**
   * Consistency check, with an identity: signs the survivor set U3 the aggregator announced to this
   * worker. Once per round: a different set later is a SharePolicyError (the aggregator told
   * workers different sets), the same set gets the same attestation.
   */
  attestSurvivors(survivors: readonly number[]): SurvivorAttestation {
    if (!this.#identity)
      throw new SharePolicyError('attestSurvivors needs a RoundIdentity (ParticipantOptions.identity)', {
        round: this.round.round,
      });
    const key = JSON.stringify([...survivors].sort((a, b) => a - b));
    if (this.#attested) {
      if (this.#attested.survivors === key) return this.#attested.attestation;
      this.#fail(
        new SharePolicyError(
          'this worker already attested a different survivor set in this round; the aggregator is telling workers different sets',
          { round: this.round.round },
        ),
      );
    }
    this.#expect('SUBMITTED', 'attest the survivor set');
    this.#checkSurvivors(survivors);
    const attestation = {
      index: this.index,
      signature: this.#identity.sign(survivorsTranscript(this.round, survivors)),
    };
    this.#attested = { survivors: key, attestation };
    return attestation;
  }

  /** Checks U3 as unmask would, failing the round on a malformed or too small set. */
  #checkSurvivors(survivors: readonly number[]): Set<number> {
    const set = new Set<number>();
    for (const s of survivors) {
      if (!Number.isSafeInteger(s) || s < 0 || s >= this.round.n)
        this.#fail(
          new MalformedMessageError(`survivor index ${s} is outside the roster`, { round: this.round.round }),
        );
      if (set.has(s))
        this.#fail(
          new DuplicateMessageError(`survivor index ${s} listed twice`, { round: this.round.round }),
        );
      set.add(s);
    }
    if (!set.has(this.index))
      this.#fail(
        new MalformedMessageError('the survivor set omits this worker, which sent its masked input', {
          round: this.round.round,
        }),
      );
    return set;
  }

  unmask(survivors: readonly number[], attestations: readonly SurvivorAttestation[] = []): UnmaskShares {
    const key = JSON.stringify([...survivors].sort((a, b) => a - b));
    if (this.#unmaskAnswer) {
      if (this.#unmaskAnswer.survivors === key) return this.#unmaskAnswer.response;
      throw new SharePolicyError(
        'this worker already answered a different unmask request in this round; answering again could reveal both shares of a peer',
        { round: this.round.round },
      );
    }
    if (this.#state === 'ABORTED')
      throw new RoundAbortedError('the round was aborted on this worker', { round: this.round.round });
    this.#expect('SUBMITTED', 'unmask');
    const set = this.#checkSurvivors(survivors);
    for (const s of set) {
      if (!this.#held.has(s) && this.round.neighbours[this.index]!.includes(s)) {
        this.#fail(
          new MalformedMessageError(`survivor ${s} never shared keys with this worker`, {
            round: this.round.round,
          }),
        );
      }
    }
    if (set.size < this.round.minInputs) {
      this.#fail(
        new ThresholdError(
          `only ${set.size} inputs survived; at least ${this.round.minInputs} are required, so nothing is unmasked`,
          { round: this.round.round, survivors: set.size, threshold: this.round.minInputs },
        ),
      );
    }
    if (this.#identity) {
      // Consistency check: only the set this worker attested, and only when more than half of all
      // members (and at least `threshold`) signed that same set. Honest workers sign one set per
      // round, so no two different sets can both gather enough signatures.
      if (this.#attested?.survivors !== key) {
        this.#fail(
          new SharePolicyError(
            'asked to unmask for a survivor set this worker did not attest; nothing is revealed',
            { round: this.round.round },
          ),
        );
      }
      const data = survivorsTranscript(this.round, survivors);
      const signers = new Set<number>();
      for (const a of attestations) {
        const k = this.#roster.get(a.index);
        if (!set.has(a.index) || signers.has(a.index) || !k?.credential) continue;
        if (this.#identity.verify(this.round.members[a.index]!, k.credential, data, a.signature))
          signers.add(a.index);
      }
      // A majority of all members as well: with a sparse (SecAgg+) graph the Shamir threshold is
      // a majority of a worker's holders only, and two disjoint groups could each reach it.
      const need = Math.max(this.round.threshold, Math.floor(this.round.n / 2) + 1);
      if (signers.size < need) {
        this.#fail(
          new SharePolicyError(
            `only ${signers.size} survivors signed this survivor set; ${need} are required before this worker reveals shares (the aggregator may be telling workers different sets)`,
            { round: this.round.round },
          ),
        );
      }
    }
    const selfMaskShares: RevealedShare[] = [];
    const maskingKeyShares: RevealedShare[] = [];
    for (const [owner, shares] of [...this.#held.entries()].sort((a, b) => a[0] - b[0])) {
      if (set.has(owner)) selfMaskShares.push({ owner, share: shares.selfMask });
      else maskingKeyShares.push({ owner, share: shares.maskingKey });
    }
    const response = { index: this.index, selfMaskShares, maskingKeyShares };
    this.#unmaskAnswer = { survivors: key, response };
    this.#state = 'UNMASKED';
    return response;
  }

  /** The pairwise-mask partners (for tests and the aggregator's view checks). */
  get partners(): readonly number[] {
    return this.#maskedWith;
  }

  /** Marks the round aborted on this worker (e.g. the aggregator reported an abort). */
  abort(): void {
    this.#state = 'ABORTED';
  }
}

/** A fresh random session id (16 bytes). */
export function newSessionId(): Uint8Array {
  return Uint8Array.from(randomBytes(16));
}
