// The coordinator's side of one HE round: a single input stage, then decryption by the key holder.
//
//   'ENCRYPTED_INPUT' → close() → 'DECRYPT' → done() → 'DONE'
//          ↘                 ↘            ↘ fail() (the key holder refused or is unreachable)
//                             'ABORTED' (fewer than minInputs contributions: nothing is decrypted)
//
// Ciphertexts are added into the running sum as they arrive (HeAccumulator, which holds no key); a
// worker that misses the deadline simply does not contribute. The caller owns the timer (as with
// AggregatorRound: `deadline` says when to close) and the call to the key holder. Used by the
// aggregator service (service/server.ts) and by worker-ts's coordinator.
import {
  DuplicateMessageError,
  MalformedMessageError,
  RoundAbortedError,
  StageError,
  ThresholdError,
  type SecAggError,
} from './errors.js';
import { HeAccumulator, type HeAggregate } from './he.js';
import type { RingBits } from './masking.js';

export type HeRoundStage = 'ENCRYPTED_INPUT' | 'DECRYPT' | 'DONE' | 'ABORTED';

/** One member's contribution: its padded vector and check slots, one BFV ciphertext per 4096 slots. */
export interface HeEncryptedInput {
  /** The member's index in the round's roster. */
  index: number;
  /** Id of the public key the input is encrypted under (keyIdOf). */
  keyId: string;
  chunks: Uint8Array[];
  /** The member's job certificate (PEM), relayed to the key holder, which checks it. */
  certificate: Uint8Array;
}

export interface HeRoundOptions {
  round: number;
  members: readonly string[];
  /** Fewest contributions a decrypted sum may hold (the job's t). */
  minInputs: number;
  /** Slots per contribution (the vector length + HE_CHECK_SLOTS). */
  length: number;
  bits: RingBits;
  /** The key the round's inputs must be encrypted under. */
  keyId: string;
  /** Deadline of the input stage, ms from now. */
  deadlineMs: number;
  /** Clock in ms (tests inject one). Default Date.now. */
  now?: () => number;
}

export class HeRound {
  #stage: HeRoundStage = 'ENCRYPTED_INPUT';
  #error: SecAggError | undefined;
  /** When the input stage closes, ms since the epoch (the caller arms its timer with it). */
  readonly deadline: number;
  readonly #received = new Set<number>();
  readonly #certificates = new Map<number, Uint8Array>();

  private constructor(
    readonly o: HeRoundOptions,
    private readonly acc: HeAccumulator,
  ) {
    this.deadline = (o.now ?? Date.now)() + o.deadlineMs;
  }

  /** Throws ConfigError unless minInputs is in [1, members]; UnavailableError when node-seal cannot load. */
  static async create(o: HeRoundOptions): Promise<HeRound> {
    return new HeRound(o, await HeAccumulator.create(o.length, o.bits));
  }

  get stage(): HeRoundStage {
    return this.#stage;
  }

  /** Why the round aborted (stage 'ABORTED'). */
  get error(): SecAggError | undefined {
    return this.#error;
  }

  /** Whether every member's contribution arrived (the stage may close before its deadline). */
  get stageComplete(): boolean {
    return this.#received.size === this.o.members.length;
  }

  /** Member indices whose contributions are in the sum, ascending. */
  received(): number[] {
    return [...this.#received].sort((a, b) => a - b);
  }

  /** The certificate member `index` sent with its contribution. */
  certificate(index: number): Uint8Array | undefined {
    return this.#certificates.get(index);
  }

  /**
   * Adds member `msg.index`'s ciphertexts into the sum. Throws StageError after the stage closed,
   * DuplicateMessageError for a second contribution, MalformedMessageError for an index outside
   * the roster, another key id or bytes that are not a ciphertext under the round's parameters,
   * ConfigError for the wrong number of ciphertexts; the sum is then unchanged.
   */
  submit(msg: HeEncryptedInput): void {
    const r = this.o.round;
    if (this.#stage !== 'ENCRYPTED_INPUT') {
      throw new StageError(`round ${r}: an encrypted input arrived in stage ${this.#stage}`, {
        round: r,
        stage: this.#stage,
        expected: 'ENCRYPTED_INPUT',
      });
    }
    if (!Number.isSafeInteger(msg.index) || msg.index < 0 || msg.index >= this.o.members.length)
      throw new MalformedMessageError(`round ${r}: no member has index ${msg.index}`, { round: r });
    const workerId = this.o.members[msg.index];
    if (this.#received.has(msg.index)) {
      throw new DuplicateMessageError(`round ${r}: member ${msg.index} already sent its encrypted input`, {
        round: r,
        workerId,
      });
    }
    if (msg.keyId !== this.o.keyId) {
      throw new MalformedMessageError(
        `round ${r}: member ${msg.index} encrypted under key ${String(msg.keyId)}, not this round's ${this.o.keyId}`,
        { round: r, workerId },
      );
    }
    if (!(msg.certificate instanceof Uint8Array) || msg.certificate.length === 0) {
      throw new MalformedMessageError(
        `round ${r}: member ${msg.index} sent no certificate (the key holder needs it to remove the member's pads)`,
        { round: r, workerId },
      );
    }
    if (!Array.isArray(msg.chunks) || !msg.chunks.every((c) => c instanceof Uint8Array)) {
      throw new MalformedMessageError(`round ${r}: chunks must be a list of byte strings`, {
        round: r,
        workerId,
      });
    }
    this.acc.add(msg.chunks);
    this.#received.add(msg.index);
    this.#certificates.set(msg.index, msg.certificate);
  }

  /** Closes the input stage. Throws ThresholdError (→ 'ABORTED') with fewer than minInputs contributions. */
  close(): number[] {
    if (this.#stage !== 'ENCRYPTED_INPUT') {
      throw new StageError(`round ${this.o.round}: close() in stage ${this.#stage}`, {
        round: this.o.round,
        stage: this.#stage,
        expected: 'ENCRYPTED_INPUT',
      });
    }
    const n = this.#received.size;
    if (n < this.o.minInputs) {
      const err = new ThresholdError(
        `round ${this.o.round} aborted after ENCRYPTED_INPUT: ${n} contributions arrived, fewer than the ${this.o.minInputs} required; nothing was decrypted`,
        { round: this.o.round, stage: 'ENCRYPTED_INPUT', survivors: n, threshold: this.o.minInputs },
      );
      this.#stage = 'ABORTED';
      this.#error = err;
      throw err;
    }
    this.#stage = 'DECRYPT';
    return this.received();
  }

  /** The encrypted sum to send to the key holder (stage DECRYPT). */
  aggregate(): HeAggregate {
    if (this.#stage !== 'DECRYPT') {
      throw new StageError(`round ${this.o.round}: aggregate() in stage ${this.#stage}`, {
        round: this.o.round,
        stage: this.#stage,
        expected: 'DECRYPT',
      });
    }
    return this.acc.result();
  }

  /** The key holder returned the sum: 'DECRYPT' → 'DONE'. */
  done(): void {
    if (this.#stage !== 'DECRYPT') {
      throw new StageError(`round ${this.o.round}: done() in stage ${this.#stage}`, {
        round: this.o.round,
        stage: this.#stage,
        expected: 'DECRYPT',
      });
    }
    this.#stage = 'DONE';
  }

  /** Aborts the round (shutdown, or the key holder refused); no-op once DONE or ABORTED. */
  fail(error: SecAggError): void {
    if (this.#stage === 'DONE' || this.#stage === 'ABORTED') return;
    this.#stage = 'ABORTED';
    this.#error =
      error.code === 'ABORTED' || error.code === 'BELOW_THRESHOLD'
        ? error
        : new RoundAbortedError(error.message, { round: this.o.round, cause: error });
  }

  /** Frees the running sum (node-seal's WebAssembly heap); call once the round is over. */
  dispose(): void {
    this.acc.dispose();
  }
}
