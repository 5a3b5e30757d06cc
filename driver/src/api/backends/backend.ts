// Where jobs run. The API server records jobs and turns their metric lines into events; a
// JobBackend only starts, observes and stops them. RayJobBackend (ray-backend.ts) is the real
// one; LocalProcessBackend (local-process-backend.ts) runs each job as a local Node process that
// prints the same metric-line contract, for tests and benchmarks without a Ray cluster.

import { setTimeout as sleep } from 'node:timers/promises';
import { figureOrNull } from '../edge/json-numbers.js';

/** What a backend needs to find a job again, persisted with the job record (JSON). */
export interface BackendHandle {
  /** The backend's id (the Ray submission id), shown to users as Job.backendJobId. */
  backendJobId: string;
  /** Anything else the backend needs after a server restart (JSON-serialisable). */
  data: Record<string, unknown>;
}

export type BackendJobState = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'STOPPED';

export interface BackendStatus {
  state: BackendJobState;
  /** The backend's explanation (Ray's job message), may be empty. */
  message: string;
}

/** One line of a job's log with its 0-based index in the whole log. */
export interface LogLine {
  index: number;
  text: string;
}

/**
 * Numbers the lines of a log that arrives in chunks, holding back an unterminated last line until
 * its newline arrives (or the log ends), and yields those at or after `fromIndex`.
 */
export class LogLines {
  /** Index of the next complete line. */
  next = 0;
  #partial = '';

  constructor(private readonly fromIndex: number) {}

  *push(chunk: string): Generator<LogLine> {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop()!;
    for (const text of parts) {
      if (this.next >= this.fromIndex) yield { index: this.next, text };
      this.next += 1;
    }
  }

  /** The log ended: its unterminated last line, if any. */
  *end(): Generator<LogLine> {
    if (this.#partial !== '' && this.next >= this.fromIndex) yield { index: this.next, text: this.#partial };
    this.#partial = '';
  }
}

/** Waits `ms`; false when `signal` aborted first (the caller stops following). */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

export interface SubmitOptions {
  /** The server's job id; backends use it to name the job (Ray submission id). */
  jobId: string;
  /** The validated job document. */
  spec: Record<string, unknown>;
  /** Aborted when the client's deadline passes or the call is cancelled. */
  signal: AbortSignal;
}

export interface JobBackend {
  /** Stored with each job: a server started with another backend does not follow it. */
  readonly name: string;
  /** Starts a job; throws BackendError. */
  submit(o: SubmitOptions): Promise<BackendHandle>;
  status(h: BackendHandle): Promise<BackendStatus>;
  /**
   * The job's log lines from index `fromIndex` on, as they appear. Ends once the job is in a
   * terminal state and every line has been delivered; stops early (without throwing) when
   * `signal` aborts. Throws BackendError when the backend cannot be reached; the caller retries
   * from its last index.
   */
  follow(h: BackendHandle, fromIndex: number, signal: AbortSignal): AsyncIterable<LogLine>;
  /** Asks the job to stop; resolves once the request was accepted. Idempotent. */
  cancel(h: BackendHandle): Promise<void>;
  /** Releases what the backend owns (a private Ray head, child processes it still waits for). */
  close(): Promise<void>;
  /**
   * Which of this backend's log lines carry the contract, and what they say. Default
   * `parseMetricLine` (the coordinator's own `metrics` / `done` lines); a Ray job's log relays
   * them as the entrypoint's `progress` / `result` lines among other processes' output.
   */
  parseLine?(text: string): MetricsLine | DoneLine | QueuedLine | null;
  /**
   * True when the backend says, by QueuedLine, while a job waits for resources: the job then
   * stays QUEUED (with the reason as its message) until its first progress line, instead of
   * turning RUNNING when the backend starts it.
   */
  readonly reportsQueueing?: boolean;
}

export class BackendError extends Error {
  override name = 'BackendError';
  constructor(
    message: string,
    /** True when retrying later may succeed (the cluster is unreachable or overloaded). */
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// ---- the metric-line contract ----------------------------------------------------------------

/** `{"type":"metrics",...}`: printed by the coordinator after each released round. */
export interface MetricsLine {
  type: 'metrics';
  round: number;
  roundsTotal: number;
  /**
   * null when the line has no `epsilon` (the previous value stands); "Infinity", and an explicit
   * JSON null (JSON.stringify's rendering of Infinity), are Infinity.
   */
  epsilon: number | null;
  delta: number | null;
  evalAccuracy: number | null;
  evalLoss: number | null;
  /** Optional per-shard figures: [{shard_id, epsilon, delta, examples, sampling_rate, steps}]. */
  shards: unknown[] | null;
}

/** `{"type":"done"|"result",...}`: printed once when the coordinator stops. */
/** The job cannot be placed yet (Ray: its placement group waits for resources). */
export interface QueuedLine {
  type: 'queued';
  /** Resource counts only (what the job needs, what the cluster has): shown to the tenant. */
  reason: string;
}

export interface DoneLine {
  type: 'done';
  /** 'succeeded' or 'failed' (anything else is treated as failed). */
  status: string;
  epsilon: number | null;
  delta: number | null;
  testAccuracy: number | null;
  rounds: number | null;
  /** Why it stopped ("completed 10 rounds", "privacy budget: ..."). */
  stopReason: string;
  error: string | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * Parses one log line: a MetricsLine or DoneLine, or null for anything else (other log output,
 * JSON of other types, or a metrics line missing its round). Never throws: logs are untrusted.
 * `metricsType` names the per-round line: `metrics` as the coordinator prints it, `progress` as
 * the Ray entrypoint relays it (same fields).
 */
export function parseMetricLine(
  text: string,
  metricsType: 'metrics' | 'progress' = 'metrics',
): MetricsLine | DoneLine | null {
  const t = text.trim();
  if (!t.startsWith('{') || t.length > 1_000_000) return null;
  let o: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(t);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
    o = v as Record<string, unknown>;
  } catch {
    return null;
  }
  if (o.type === metricsType) {
    const round = num(o.round);
    if (round === null) return null;
    return {
      type: 'metrics',
      round,
      roundsTotal: num(o.rounds_total) ?? 0,
      // An explicit null is what JSON.stringify makes of Infinity or NaN (a coordinator's ε that
      // overflowed, or no noise): read as ∞, never as "no value, keep the smaller previous one".
      epsilon: o.epsilon === null ? Infinity : figureOrNull(o.epsilon),
      delta: num(o.delta),
      evalAccuracy: num(o.eval_accuracy),
      evalLoss: num(o.eval_loss),
      shards: Array.isArray(o.shards) ? o.shards : null,
    };
  }
  if (o.type === 'done' || o.type === 'result') {
    return {
      type: 'done',
      status: str(o.status) || (o.error ? 'failed' : 'succeeded'),
      epsilon: figureOrNull(o.epsilon),
      delta: num(o.delta),
      testAccuracy: num(o.test_accuracy),
      rounds: num(o.rounds),
      stopReason: str(o.stop_reason),
      error: typeof o.error === 'string' ? o.error : null,
    };
  }
  return null;
}
