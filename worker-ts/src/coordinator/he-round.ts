// The coordinator's side of one HE round: a single input stage, then decryption by the key holder.
//
//   'ENCRYPTED_INPUT' → close() → 'DECRYPT' → done() → 'DONE'
//                             ↘ 'ABORTED' (fewer than minInputs contributions: nothing is decrypted)
//
// Ciphertexts are added into the running sum as they arrive (secure-agg's HeAccumulator, which
// holds no key); a worker that misses the deadline simply does not contribute. Refusals are
// secure-agg's typed errors, which the coordinator's RPC edge maps to FAILED_PRECONDITION.
import {
  DuplicateMessageError,
  HeAccumulator,
  MalformedMessageError,
  StageError,
  ThresholdError,
  type HeAggregate,
  type RingBits,
} from '@tensorguard/secure-agg';
import type { EncryptedInput } from '../protocol.js';

export type HeRoundStage = 'ENCRYPTED_INPUT' | 'DECRYPT' | 'DONE' | 'ABORTED';

export interface HeRoundOptions {
  round: number;
  members: readonly string[];
  /** Fewest contributions a decrypted sum may hold (the job's t). */
  minInputs: number;
  /** Slots per contribution (the model's trainable parameters + the count slot). */
  length: number;
  bits: RingBits;
  keyId: string;
  /** Deadline of the input stage, ms from now. */
  deadlineMs: number;
}

export class HeRound {
  stage: HeRoundStage = 'ENCRYPTED_INPUT';
  readonly deadline: number;
  readonly #received = new Set<number>();

  private constructor(
    readonly o: HeRoundOptions,
    private readonly acc: HeAccumulator,
  ) {
    this.deadline = Date.now() + o.deadlineMs;
  }

  static async create(o: HeRoundOptions): Promise<HeRound> {
    return new HeRound(o, await HeAccumulator.create(o.length, o.bits));
  }

  /** Whether every member's contribution arrived (the stage may close before its deadline). */
  get stageComplete(): boolean {
    return this.#received.size === this.o.members.length;
  }

  /** Member indices whose contributions are in the sum, ascending. */
  received(): number[] {
    return [...this.#received].sort((a, b) => a - b);
  }

  /**
   * Adds member `msg.index`'s ciphertexts into the sum. Throws StageError after the stage closed,
   * DuplicateMessageError for a second contribution, MalformedMessageError (or secure-agg's
   * ConfigError for the wrong number of ciphertexts) for anything that is not a contribution under
   * this round's key; the sum is then unchanged.
   */
  submit(msg: EncryptedInput): void {
    const r = this.o.round;
    if (this.stage !== 'ENCRYPTED_INPUT') {
      throw new StageError(`round ${r}: an encrypted input arrived in stage ${this.stage}`, {
        round: r,
        stage: this.stage,
        expected: 'ENCRYPTED_INPUT',
      });
    }
    if (this.#received.has(msg.index)) {
      throw new DuplicateMessageError(`round ${r}: member ${msg.index} already sent its encrypted input`, {
        round: r,
      });
    }
    if (msg.keyId !== this.o.keyId) {
      throw new MalformedMessageError(
        `round ${r}: member ${msg.index} encrypted under key ${String(msg.keyId)}, not this round's ${this.o.keyId}`,
        { round: r },
      );
    }
    if (!Array.isArray(msg.chunks) || !msg.chunks.every((c) => c instanceof Uint8Array)) {
      throw new MalformedMessageError(`round ${r}: chunks must be a list of byte strings`, { round: r });
    }
    this.acc.add(msg.chunks);
    this.#received.add(msg.index);
  }

  /** Closes the input stage. Throws ThresholdError (→ 'ABORTED') with fewer than minInputs contributions. */
  close(): number[] {
    if (this.stage !== 'ENCRYPTED_INPUT') {
      throw new StageError(`round ${this.o.round}: close() in stage ${this.stage}`, {
        round: this.o.round,
        stage: this.stage,
        expected: 'ENCRYPTED_INPUT',
      });
    }
    const n = this.#received.size;
    if (n < this.o.minInputs) {
      this.stage = 'ABORTED';
      throw new ThresholdError(
        `round ${this.o.round} aborted after ENCRYPTED_INPUT: ${n} contributions arrived, fewer than the ${this.o.minInputs} required; nothing was decrypted`,
        { round: this.o.round, stage: 'ENCRYPTED_INPUT', survivors: n, threshold: this.o.minInputs },
      );
    }
    this.stage = 'DECRYPT';
    return this.received();
  }

  /** The encrypted sum to send to the key holder (stage DECRYPT). */
  aggregate(): HeAggregate {
    if (this.stage !== 'DECRYPT') {
      throw new StageError(`round ${this.o.round}: aggregate() in stage ${this.stage}`, {
        round: this.o.round,
        stage: this.stage,
        expected: 'DECRYPT',
      });
    }
    return this.acc.result();
  }

  done(): void {
    this.stage = 'DONE';
  }

  /** Frees the running sum (node-seal's WebAssembly heap); call once the round is over. */
  dispose(): void {
    this.acc.dispose();
  }
}
