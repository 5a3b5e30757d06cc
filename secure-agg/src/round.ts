// The aggregator's side of one round, as an explicit state machine:
//
//   ADVERTISE_KEYS → SHARE_KEYS → MASKED_INPUT → UNMASK → DONE
//          ↘              ↘             ↘           ↘
//                              ABORTED
//
// Every message is checked against the current stage, the sender's membership of the stage's
// participant set (U0 = roster, U1 advertised, U2 shared, U3 sent input), duplicates and lengths.
// A stage closes when every expected participant has answered or its deadline passes (the caller
// owns the timer and calls closeStage; `deadline` tells it when). Closing checks that enough
// survived; if not, the round aborts with a ThresholdError and nothing is ever unmasked. The round
// holds only the running sum of masked inputs, never an individual unmasked vector.
import {
  DeadlineError,
  DuplicateMessageError,
  MalformedMessageError,
  RoundAbortedError,
  type SecAggError,
  StageError,
  ThresholdError,
} from './errors.js';
import { agree, deriveKey, generateKeyPair, KEY_BYTES, publicKeyOf } from './keys.js';
import {
  addMasksInto,
  addInto,
  allocRing,
  ringBitsOf,
  words32,
  type RingVector,
  type SignedMask,
} from './masking.js';
import type {
  ActiveStage,
  AdvertiseKeys,
  CompiledRound,
  EncryptedShare,
  KeyRoster,
  MaskedInput,
  RoundResult,
  ShareKeys,
  Stage,
  UnmaskShares,
} from './messages.js';
import { bytesToField, combineShares, FIELD_BYTES, type Share } from './shamir.js';

/** Per-stage deadlines in milliseconds from the moment the stage opens. */
export type StageDeadlinesMs = Record<ActiveStage, number>;

export const DEFAULT_DEADLINES_MS: StageDeadlinesMs = {
  ADVERTISE_KEYS: 30_000,
  SHARE_KEYS: 30_000,
  MASKED_INPUT: 300_000,
  UNMASK: 30_000,
};

export interface AggregatorRoundOptions {
  /** Stage deadlines; default DEFAULT_DEADLINES_MS. */
  deadlinesMs?: Partial<StageDeadlinesMs>;
  /** Clock in ms (tests inject one). Default Date.now. */
  now?: () => number;
}

/** Size of an encrypted share bundle: 12-byte nonce, 64-byte payload, 16-byte tag. */
export const SHARE_CIPHERTEXT_BYTES = 12 + 2 * FIELD_BYTES + 16;

// A throwaway key to test advertised public keys: X25519 with a small-order point fails.
const probeKey = generateKeyPair().privateKey;

function checkPublicKey(raw: Uint8Array, what: string, ctx: { round: number; workerId: string }): void {
  if (raw.length !== KEY_BYTES) {
    throw new MalformedMessageError(`${what} must be ${KEY_BYTES} bytes, got ${raw.length}`, ctx);
  }
  try {
    agree(probeKey, raw);
  } catch (cause) {
    throw new MalformedMessageError(`${what} is not a usable X25519 public key`, { ...ctx, cause });
  }
}

export class AggregatorRound {
  readonly params: CompiledRound;
  readonly #deadlines: StageDeadlinesMs;
  readonly #now: () => number;
  #stage: Stage = 'ADVERTISE_KEYS';
  #deadline: number;
  #error: SecAggError | undefined;
  readonly #keys = new Map<number, AdvertiseKeys>();
  readonly #shared = new Map<number, EncryptedShare[]>();
  #inbox = new Map<number, EncryptedShare[]>();
  readonly #inputs = new Set<number>();
  readonly #sum: RingVector;
  readonly #unmask = new Map<number, UnmaskShares>();
  #result: RoundResult | undefined;
  readonly #listeners = new Set<(stage: Stage) => void>();

  constructor(params: CompiledRound, options: AggregatorRoundOptions = {}) {
    this.params = params;
    this.#deadlines = { ...DEFAULT_DEADLINES_MS, ...options.deadlinesMs };
    this.#now = options.now ?? Date.now;
    this.#deadline = this.#now() + this.#deadlines.ADVERTISE_KEYS;
    this.#sum = allocRing(params.bits, params.vectorLength);
  }

  get stage(): Stage {
    return this.#stage;
  }

  /** Epoch ms at which the current stage closes. */
  get deadline(): number {
    return this.#deadline;
  }

  /**
   * Restarts the current stage's deadline from now. The aggregator calls it when it held a stage's
   * opening back (the release gate ran between MASKED_INPUT and UNMASK), so the workers get the
   * stage's whole deadline. Throws StageError in DONE or ABORTED.
   */
  restartClock(): void {
    const stage = this.#stage;
    if (stage === 'DONE' || stage === 'ABORTED')
      throw new StageError(`round ${this.params.round} is ${stage}; no stage clock to restart`, {
        round: this.params.round,
        stage,
        expected: 'an active stage',
      });
    this.#deadline = this.#now() + this.#deadlines[stage];
  }

  /** The error that aborted the round, if it was aborted. */
  get error(): SecAggError | undefined {
    return this.#error;
  }

  /** Calls `listener` after every transition (including to DONE or ABORTED). */
  onTransition(listener: (stage: Stage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Indices expected to send the current stage's message. */
  expected(): Set<number> {
    switch (this.#stage) {
      case 'ADVERTISE_KEYS':
        return new Set(this.params.members.map((_, i) => i));
      case 'SHARE_KEYS':
        return new Set(this.#keys.keys());
      case 'MASKED_INPUT':
        return new Set(this.#shared.keys());
      case 'UNMASK':
        return new Set(this.#inputs);
      default:
        return new Set();
    }
  }

  /** Indices that have sent the current stage's message. */
  received(): Set<number> {
    switch (this.#stage) {
      case 'ADVERTISE_KEYS':
        return new Set(this.#keys.keys());
      case 'SHARE_KEYS':
        return new Set(this.#shared.keys());
      case 'MASKED_INPUT':
        return new Set(this.#inputs);
      case 'UNMASK':
        return new Set(this.#unmask.keys());
      default:
        return new Set();
    }
  }

  /** True when everyone expected in the current stage has answered. */
  get stageComplete(): boolean {
    return this.received().size === this.expected().size;
  }

  #check(stage: ActiveStage, index: number): { round: number; workerId: string } {
    const ctx = { round: this.params.round, workerId: this.params.members[index] ?? `#${index}` };
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.params.n) {
      throw new MalformedMessageError(`index ${index} is not in the roster of ${this.params.n}`, ctx);
    }
    if (this.#stage === 'ABORTED') {
      throw new RoundAbortedError(`round ${this.params.round} was aborted: ${this.#error?.message}`, {
        ...ctx,
        cause: this.#error,
      });
    }
    if (this.#stage !== stage) {
      throw new StageError(
        `round ${this.params.round} is in stage ${this.#stage}; a ${stage} message is not accepted now`,
        {
          ...ctx,
          stage: this.#stage,
          expected: stage,
        },
      );
    }
    if (this.#now() > this.#deadline) {
      throw new DeadlineError(`the ${stage} deadline of round ${this.params.round} has passed`, {
        ...ctx,
        stage,
      });
    }
    if (!this.expected().has(index)) {
      throw new StageError(
        `${ctx.workerId} (index ${index}) dropped out of round ${this.params.round} before ${stage} and cannot rejoin it`,
        {
          ...ctx,
          stage,
          expected: 'a participant of the previous stage',
        },
      );
    }
    if (this.received().has(index)) {
      throw new DuplicateMessageError(`${ctx.workerId} (index ${index}) already sent its ${stage} message`, {
        ...ctx,
        stage,
      });
    }
    return ctx;
  }

  submitAdvertiseKeys(msg: AdvertiseKeys): void {
    const ctx = this.#check('ADVERTISE_KEYS', msg.index);
    checkPublicKey(msg.encryptionKey, 'encryptionKey', ctx);
    checkPublicKey(msg.maskingKey, 'maskingKey', ctx);
    if ((msg.credential === undefined) !== (msg.signature === undefined)) {
      throw new MalformedMessageError('credential and signature come together or not at all', ctx);
    }
    // Relayed as they came: every worker checks each member's signature itself.
    this.#keys.set(msg.index, {
      index: msg.index,
      encryptionKey: Uint8Array.from(msg.encryptionKey),
      maskingKey: Uint8Array.from(msg.maskingKey),
      ...(msg.credential !== undefined && msg.signature !== undefined
        ? { credential: Uint8Array.from(msg.credential), signature: Uint8Array.from(msg.signature) }
        : {}),
    });
  }

  /** The set U1 with keys, in index order (available from SHARE_KEYS on). */
  keyRoster(): KeyRoster {
    return [...this.#keys.values()].sort((a, b) => a.index - b.index);
  }

  submitShareKeys(msg: ShareKeys): void {
    const ctx = this.#check('SHARE_KEYS', msg.index);
    const want = new Set(this.params.holders[msg.index]!.filter((h) => h !== msg.index && this.#keys.has(h)));
    const seen = new Set<number>();
    for (const s of msg.shares) {
      if (s.from !== msg.index)
        throw new MalformedMessageError(`a share claims sender ${s.from} in ${ctx.workerId}'s message`, ctx);
      if (!want.has(s.to))
        throw new MalformedMessageError(
          `a share is addressed to index ${s.to}, which is not one of the sender's holders in this round`,
          ctx,
        );
      if (seen.has(s.to)) throw new DuplicateMessageError(`two shares are addressed to index ${s.to}`, ctx);
      if (s.ciphertext.length !== SHARE_CIPHERTEXT_BYTES) {
        throw new MalformedMessageError(
          `a share ciphertext must be ${SHARE_CIPHERTEXT_BYTES} bytes, got ${s.ciphertext.length}`,
          ctx,
        );
      }
      seen.add(s.to);
    }
    if (seen.size !== want.size) {
      throw new MalformedMessageError(
        `expected one share for each of ${want.size} holders, got ${seen.size}`,
        ctx,
      );
    }
    this.#shared.set(
      msg.index,
      msg.shares.map((s) => ({ from: s.from, to: s.to, ciphertext: Uint8Array.from(s.ciphertext) })),
    );
  }

  /** Share bundles addressed to `index` from the set U2 (available from MASKED_INPUT on). */
  sharesFor(index: number): EncryptedShare[] {
    return this.#inbox.get(index) ?? [];
  }

  submitMaskedInput(msg: MaskedInput): void {
    const ctx = this.#check('MASKED_INPUT', msg.index);
    if (msg.vector.length !== this.params.vectorLength || ringBitsOf(msg.vector) !== this.params.bits) {
      throw new MalformedMessageError(
        `expected a ${this.params.bits}-bit vector of length ${this.params.vectorLength}, got ${ringBitsOf(msg.vector)}-bit of length ${msg.vector.length}`,
        ctx,
      );
    }
    // Only the running sum is kept: the aggregator never holds a per-worker vector longer than this.
    addInto(this.#sum, msg.vector);
    this.#inputs.add(msg.index);
  }

  /** The set U3 of workers whose inputs are in the sum (available from UNMASK on). */
  survivors(): number[] {
    return [...this.#inputs].sort((a, b) => a - b);
  }

  submitUnmask(msg: UnmaskShares): void {
    const ctx = this.#check('UNMASK', msg.index);
    const owners = this.params.holders[msg.index]!.filter((o) => this.#shared.has(o));
    const wantSelf = owners.filter((o) => this.#inputs.has(o));
    const wantKey = owners.filter((o) => !this.#inputs.has(o));
    const same = (got: readonly { owner: number; share: Uint8Array }[], want: number[], kind: string) => {
      const owned = got.map((g) => g.owner).sort((a, b) => a - b);
      if (owned.length !== want.length || owned.some((o, i) => o !== want[i])) {
        throw new MalformedMessageError(
          `${kind} shares are for owners [${owned.join(',')}], expected [${want.join(',')}]`,
          ctx,
        );
      }
      for (const g of got) bytesToField(g.share); // throws MalformedMessageError on a bad value
    };
    same(msg.selfMaskShares, wantSelf, 'self-mask');
    same(msg.maskingKeyShares, wantKey, 'masking-key');
    this.#unmask.set(msg.index, msg);
  }

  /** The unmasked sum (stage DONE only). */
  result(): RoundResult {
    if (!this.#result) {
      throw new StageError(`round ${this.params.round} has no result in stage ${this.#stage}`, {
        round: this.params.round,
        stage: this.#stage,
        expected: 'DONE',
      });
    }
    return this.#result;
  }

  /** Aborts the round (idempotent); later messages get RoundAbortedError. */
  abort(error: SecAggError): void {
    if (this.#stage === 'DONE' || this.#stage === 'ABORTED') return;
    this.#error = error;
    this.#stage = 'ABORTED';
    this.#inbox = new Map();
    words32(this.#sum).fill(0);
    this.#emit();
  }

  #emit(): void {
    for (const l of this.#listeners) l(this.#stage);
  }

  #enter(stage: Stage): void {
    this.#stage = stage;
    if (stage !== 'DONE' && stage !== 'ABORTED') this.#deadline = this.#now() + this.#deadlines[stage];
    this.#emit();
  }

  /** Aborts with a ThresholdError unless `set` is large enough and every `owner` has t holders in it. */
  #requireViable(set: Set<number>, owners: Iterable<number>, stage: ActiveStage): void {
    const { minInputs, threshold, round } = this.params;
    const inputs = stage === 'UNMASK' ? this.#inputs.size : set.size;
    if (inputs < minInputs) {
      this.#abortWith(
        new ThresholdError(
          `round ${round} aborted after ${stage}: ${inputs} workers remain, fewer than the ${minInputs} required; nothing was unmasked`,
          { round, stage, survivors: inputs, threshold: minInputs },
        ),
      );
    }
    for (const u of owners) {
      const have = this.params.holders[u]!.filter((h) => set.has(h)).length;
      if (have < threshold) {
        this.#abortWith(
          new ThresholdError(
            `round ${round} aborted after ${stage}: only ${have} of the share holders of ${this.params.members[u]} (index ${u}) remain, fewer than the threshold ${threshold}; nothing was unmasked`,
            { round, stage, survivors: have, threshold, workerId: this.params.members[u] },
          ),
        );
      }
    }
  }

  #abortWith(err: SecAggError): never {
    this.abort(err);
    throw err;
  }

  /**
   * Closes the current stage (everyone answered, or the deadline passed) and opens the next.
   * Throws ThresholdError, after aborting the round, when too few survived; closing the UNMASK
   * stage reconstructs the secrets and computes the sum.
   */
  closeStage(): Stage {
    switch (this.#stage) {
      case 'ADVERTISE_KEYS': {
        const u1 = new Set(this.#keys.keys());
        this.#requireViable(u1, u1, 'ADVERTISE_KEYS');
        this.#enter('SHARE_KEYS');
        break;
      }
      case 'SHARE_KEYS': {
        const u2 = new Set(this.#shared.keys());
        this.#requireViable(u2, u2, 'SHARE_KEYS');
        const inbox = new Map<number, EncryptedShare[]>();
        for (const shares of this.#shared.values()) {
          for (const s of shares)
            if (u2.has(s.to)) (inbox.get(s.to) ?? inbox.set(s.to, []).get(s.to)!).push(s);
        }
        this.#inbox = inbox;
        this.#enter('MASKED_INPUT');
        break;
      }
      case 'MASKED_INPUT': {
        const u3 = new Set(this.#inputs);
        this.#requireViable(u3, this.#secretsToRebuild(), 'MASKED_INPUT');
        this.#inbox = new Map();
        this.#enter('UNMASK');
        break;
      }
      case 'UNMASK':
        this.#requireViable(new Set(this.#unmask.keys()), this.#secretsToRebuild(), 'UNMASK');
        this.#finish();
        break;
      default:
        throw new StageError(`round ${this.params.round} is ${this.#stage}; there is no stage to close`, {
          round: this.params.round,
          stage: this.#stage,
          expected: 'an active stage',
        });
    }
    return this.#stage;
  }

  /** Owners whose secret the unmask stage must rebuild: survivors' b, and dropouts' s^SK that matter. */
  #secretsToRebuild(): number[] {
    const out: number[] = [];
    for (const u of this.#shared.keys()) {
      if (this.#inputs.has(u)) out.push(u);
      else if (this.params.neighbours[u]!.some((v) => this.#inputs.has(v))) out.push(u);
    }
    return out;
  }

  #finish(): void {
    const { threshold, ctx, round } = this.params;
    const sum = this.#sum;
    const sharesOf = (owner: number, kind: 'selfMaskShares' | 'maskingKeyShares'): Share[] => {
      const out: Share[] = [];
      for (const [holder, msg] of this.#unmask) {
        const s = msg[kind].find((x) => x.owner === owner);
        if (s) out.push({ x: holder + 1, y: s.share });
      }
      return out;
    };
    const masks: SignedMask[] = []; // removed from the sum in one pass once all are known
    for (const u of this.#secretsToRebuild()) {
      if (this.#inputs.has(u)) {
        masks.push({ seed: combineShares(sharesOf(u, 'selfMaskShares'), threshold), sign: -1 });
        continue;
      }
      const sk = combineShares(sharesOf(u, 'maskingKeyShares'), threshold);
      if (!Buffer.from(publicKeyOf(sk)).equals(this.#keys.get(u)!.maskingKey)) {
        this.#abortWith(
          new MalformedMessageError(
            `round ${round}: the masking key rebuilt for ${this.params.members[u]} does not match its advertised key; a share was corrupted`,
            { round },
          ),
        );
      }
      for (const v of this.params.neighbours[u]!) {
        if (!this.#inputs.has(v)) continue;
        const seed = deriveKey(agree(sk, this.#keys.get(v)!.maskingKey), ctx, 'pairwise-mask');
        // v added +PRG(s_uv) if v < u, else -PRG(s_uv); remove it.
        masks.push({ seed, sign: v < u ? -1 : 1 });
      }
    }
    addMasksInto(sum, masks, ctx);
    const survivors = this.survivors();
    this.#result = {
      round,
      sum,
      survivors,
      survivorIds: survivors.map((i) => this.params.members[i]!),
    };
    this.#enter('DONE');
  }
}
