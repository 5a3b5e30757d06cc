// Runs a whole round in one process: the aggregator state machine and n participants exchanging
// the domain messages directly. Used by property tests and benchmarks; the gRPC service drives the
// same two classes over the network.
import { SecAggError } from './errors.js';
import type { RingVector } from './masking.js';
import {
  compileRound,
  type ActiveStage,
  type CompiledRound,
  type RoundParams,
  type RoundResult,
} from './messages.js';
import { RoundParticipant } from './participant.js';
import { AggregatorRound, type AggregatorRoundOptions } from './round.js';

/** A message as it would leave a worker, for byte accounting. */
export type SentMessage =
  | { kind: 'ADVERTISE_KEYS'; bytes: number }
  | { kind: 'SHARE_KEYS'; bytes: number }
  | { kind: 'MASKED_INPUT'; bytes: number }
  | { kind: 'UNMASK'; bytes: number };

export interface InProcessRoundOptions {
  params: RoundParams;
  /** Encoded inputs by roster index (workers that never reach MASKED_INPUT may pass anything). */
  inputs: readonly RingVector[];
  /** Worker index → the first stage whose message it never sends (it drops before it). */
  dropBefore?: ReadonlyMap<number, ActiveStage>;
  aggregator?: AggregatorRoundOptions;
}

export interface InProcessRoundReport {
  /** The result, or undefined when the round aborted. */
  result: RoundResult | undefined;
  /** The error that aborted the round, if any. */
  error: SecAggError | undefined;
  /** Milliseconds of worker-side computation, by index (sum over stages). */
  workerMs: number[];
  /** Milliseconds of aggregator-side computation. */
  aggregatorMs: number;
  /** Payload bytes each worker sent (keys, ciphertexts, vector, shares), by index. */
  bytesSent: number[];
  round: CompiledRound;
}

const ORDER: ActiveStage[] = ['ADVERTISE_KEYS', 'SHARE_KEYS', 'MASKED_INPUT', 'UNMASK'];

/** Runs one round; never throws for protocol outcomes (aborts are reported in `error`). */
export function runRoundInProcess(options: InProcessRoundOptions): InProcessRoundReport {
  const round = compileRound(options.params);
  const agg = new AggregatorRound(round, options.aggregator);
  const workers = round.members.map((_, i) => new RoundParticipant(round, i));
  const workerMs = workers.map(() => 0);
  const bytesSent = workers.map(() => 0);
  let aggregatorMs = 0;
  const alive = (i: number, stage: ActiveStage) => {
    const drop = options.dropBefore?.get(i);
    return drop === undefined || ORDER.indexOf(stage) < ORDER.indexOf(drop);
  };
  const timed = <T>(i: number, f: () => T): T => {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      workerMs[i]! += performance.now() - t0;
    }
  };
  const server = <T>(f: () => T): T => {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      aggregatorMs += performance.now() - t0;
    }
  };
  try {
    for (const w of workers) {
      if (!alive(w.index, 'ADVERTISE_KEYS')) continue;
      const m = timed(w.index, () => w.advertiseKeys());
      bytesSent[w.index]! += m.encryptionKey.length + m.maskingKey.length;
      server(() => agg.submitAdvertiseKeys(m));
    }
    server(() => agg.closeStage());
    const roster = agg.keyRoster();
    for (const w of workers) {
      if (!alive(w.index, 'SHARE_KEYS') || !roster.some((k) => k.index === w.index)) continue;
      const m = timed(w.index, () => w.shareKeys(roster));
      bytesSent[w.index]! += m.shares.reduce((s, x) => s + x.ciphertext.length + 8, 0);
      server(() => agg.submitShareKeys(m));
    }
    server(() => agg.closeStage());
    for (const w of workers) {
      if (!alive(w.index, 'MASKED_INPUT') || w.state !== 'SHARED') continue;
      const m = timed(w.index, () => w.maskInputWithShares(agg.sharesFor(w.index), options.inputs[w.index]!));
      bytesSent[w.index]! += m.vector.byteLength;
      server(() => agg.submitMaskedInput(m));
    }
    server(() => agg.closeStage());
    const survivors = agg.survivors();
    for (const w of workers) {
      if (!alive(w.index, 'UNMASK') || w.state !== 'SUBMITTED') continue;
      const m = timed(w.index, () => w.unmask(survivors));
      bytesSent[w.index]! += (m.selfMaskShares.length + m.maskingKeyShares.length) * (32 + 4);
      server(() => agg.submitUnmask(m));
    }
    server(() => agg.closeStage());
    return { result: agg.result(), error: undefined, workerMs, aggregatorMs, bytesSent, round };
  } catch (err) {
    if (err instanceof SecAggError) {
      return { result: undefined, error: err, workerMs, aggregatorMs, bytesSent, round };
    }
    throw err;
  }
}
