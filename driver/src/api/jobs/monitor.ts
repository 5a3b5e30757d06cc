// The controller that follows running jobs: for each job that is not terminal it reads the
// backend's log from the stored cursor, turns metric lines into events, appends them with the
// new cursor in one transaction, and wakes the WatchJob streams of that job. After a restart it
// picks every active job up again from its cursor, so no event is lost or repeated.
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { isNonPrivate } from './accounting.js';
import { clientJobMessage } from '../edge/client-message.js';
import { BackendError, parseMetricLine, type BackendHandle, type JobBackend } from '../backends/backend.js';
import { isTerminal, type JobEventKind, type JobState } from './domain.js';
import type { JobStore, JobRecord, JobUpdate } from './store.js';

/** Wakes WatchJob streams when a job has new events. */
export class EventHub {
  private waiters = new Map<string, Set<() => void>>();

  notify(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const wake of set) wake();
  }

  /** Resolves at the next notify for the job, or when `signal` aborts. */
  wait(jobId: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      let set = this.waiters.get(jobId);
      if (!set) this.waiters.set(jobId, (set = new Set()));
      const wake = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters.get(jobId)?.delete(wake);
        resolve();
      };
      set.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}

const handleOf = (r: JobRecord): BackendHandle => ({ backendJobId: r.backendJobId, data: r.backendData });

export class JobMonitor {
  private loops = new Map<string, { ctl: AbortController; done: Promise<void> }>();
  private closed = false;

  constructor(
    private readonly store: JobStore,
    private readonly backend: JobBackend,
    readonly hub: EventHub,
    private readonly log: Logger,
    /** Backoff after a backend error, milliseconds (default 1000). */
    private readonly retryMs = 1000,
  ) {}

  /** Follows every active job in the store (called once at server start). */
  resumeAll(): void {
    for (const r of this.store.activeJobs()) {
      if (r.backend !== this.backend.name) {
        this.log.warn(
          { jobId: r.jobId, backend: r.backend },
          `job was submitted through backend "${r.backend}"; this server runs "${this.backend.name}" and does not follow it`,
        );
        continue;
      }
      if (r.backendJobId === '') {
        // The server stopped between recording the job and the backend accepting it.
        this.transition(
          r.jobId,
          'FAILED',
          'the server stopped before the job reached the cluster; submit it again with a new request_id',
        );
        continue;
      }
      this.follow(r.jobId);
    }
  }

  /** Starts following a job (no-op when already followed). */
  follow(jobId: string): void {
    if (this.closed || this.loops.has(jobId)) return;
    const ctl = new AbortController();
    const done = this.run(jobId, ctl.signal)
      .catch((err: unknown) => this.log.error({ err, jobId }, 'job monitor loop failed'))
      .finally(() => this.loops.delete(jobId));
    this.loops.set(jobId, { ctl, done });
  }

  get following(): number {
    return this.loops.size;
  }

  /** Moves a job to a state with an event, wakes its watchers; false if it was already terminal. */
  transition(jobId: string, to: JobState, message: string, update: JobUpdate = {}): boolean {
    const events = this.store.append(
      jobId,
      [{ type: 'state_changed', state: to, previousState: null, message }],
      update,
    );
    this.hub.notify(jobId);
    return events.length > 0;
  }

  /**
   * Stops following, cancels through the backend and records CANCELLED. Following stops first:
   * a stopped job's last lines (Ray's entrypoint reports "failed: stopped") must not turn the
   * cancellation into FAILED. When the backend refuses, following resumes and the error is thrown.
   */
  async cancel(record: JobRecord, reason: string): Promise<void> {
    const loop = this.loops.get(record.jobId);
    loop?.ctl.abort();
    await loop?.done;
    try {
      if (record.backendJobId !== '') await this.backend.cancel(handleOf(record));
    } catch (err) {
      this.follow(record.jobId);
      throw err;
    }
    this.transition(record.jobId, 'CANCELLED', reason);
  }

  /**
   * A message from the cluster as a tenant may read it (client-message.ts): file contents, host
   * paths, PIDs and traces stay in the server log, under the job id.
   */
  private fromCluster(jobId: string, raw: string): string {
    const message = clientJobMessage(jobId, raw);
    if (message !== raw) this.log.warn({ jobId, clusterMessage: raw }, 'job message from the cluster');
    return message;
  }

  private async run(jobId: string, signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      const rec = this.store.get(jobId);
      if (!rec || isTerminal(rec.state)) return;
      try {
        await this.followOnce(rec, signal);
        if (signal.aborted) return;
        const after = this.store.get(jobId)!;
        if (isTerminal(after.state)) return;
        // The log ended without a done line: the backend's own state decides.
        const st = await this.backend.status(handleOf(after));
        if (st.state === 'SUCCEEDED')
          this.transition(jobId, 'SUCCEEDED', this.fromCluster(jobId, st.message));
        else if (st.state === 'STOPPED')
          this.transition(
            jobId,
            'CANCELLED',
            this.fromCluster(jobId, st.message || 'stopped on the cluster'),
          );
        else if (st.state === 'FAILED')
          this.transition(jobId, 'FAILED', this.fromCluster(jobId, st.message || 'failed on the cluster'));
        else continue; // still running: the log stream was cut; read on from the cursor
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof BackendError && !err.retryable) {
          this.transition(jobId, 'FAILED', this.fromCluster(jobId, err.message));
          return;
        }
        attempt += 1;
        const delay = Math.min(30_000, this.retryMs * 2 ** Math.min(attempt, 5));
        this.log.warn({ err, jobId, attempt, delayMs: delay }, 'following the job failed; retrying');
        try {
          await sleep(delay, undefined, { signal });
        } catch {
          return;
        }
      }
    }
  }

  private async followOnce(rec: JobRecord, signal: AbortSignal): Promise<void> {
    const jobId = rec.jobId;
    let state = rec.state;
    // A job without noise has ε = ∞ whatever its lines say (an old coordinator prints null).
    const nonPrivate = isNonPrivate(rec.spec);
    let epsilon = nonPrivate ? Infinity : rec.privacySpent.epsilon;
    let delta = rec.privacySpent.delta;
    const parse = this.backend.parseLine
      ? (t: string) => this.backend.parseLine!(t)
      : (t: string) => parseMetricLine(t);
    if (
      state === 'QUEUED' &&
      !this.backend.reportsQueueing &&
      (await this.backend.status(handleOf(rec))).state === 'RUNNING'
    ) {
      this.transition(jobId, 'RUNNING', '');
      state = 'RUNNING';
    }
    for await (const line of this.backend.follow(handleOf(rec), rec.logCursor, signal)) {
      const m = parse(line.text);
      if (m === null) continue;
      if (m.type === 'queued') {
        // Still waiting for resources: the job stays QUEUED, its message says why.
        if (state === 'QUEUED')
          this.store.append(jobId, [], { logCursor: line.index + 1, message: m.reason });
        this.hub.notify(jobId);
        continue;
      }
      const kinds: JobEventKind[] = [];
      const update: JobUpdate = { logCursor: line.index + 1 };
      if (state === 'QUEUED') {
        kinds.push({ type: 'state_changed', state: 'RUNNING', previousState: null, message: '' });
        state = 'RUNNING';
      }
      if (m.type === 'metrics') {
        epsilon = nonPrivate ? Infinity : (m.epsilon ?? epsilon);
        delta = m.delta ?? delta;
        const privacySpent = { epsilon, delta, accountant: rec.privacySpent.accountant };
        kinds.push({ type: 'round_progress', round: m.round, roundsTotal: m.roundsTotal, privacySpent });
        update.roundsCompleted = m.round;
        update.epsilon = epsilon;
        update.delta = delta;
        if (m.shards) update.privacy = { ...rec.privacy, shards: m.shards };
        if (m.evalAccuracy !== null) {
          kinds.push({ type: 'eval_metrics', round: m.round, accuracy: m.evalAccuracy, loss: m.evalLoss });
          update.evalAccuracy = m.evalAccuracy;
        }
      } else {
        const ok = m.status === 'succeeded';
        const message = this.fromCluster(
          jobId,
          ok ? m.stopReason : (m.error ?? (m.stopReason || `coordinator reported ${m.status}`)),
        );
        if (nonPrivate) update.epsilon = Infinity;
        else if (m.epsilon !== null) update.epsilon = m.epsilon;
        if (m.delta !== null) update.delta = m.delta;
        if (m.rounds !== null) update.roundsCompleted = m.rounds;
        kinds.push({
          type: 'state_changed',
          state: ok ? 'SUCCEEDED' : 'FAILED',
          previousState: null,
          message,
        });
      }
      const stored = this.store.append(jobId, kinds, update);
      this.hub.notify(jobId);
      if (stored.length === 0 || m.type === 'done') return; // terminal now (done, or cancelled meanwhile)
    }
  }

  /** Stops following (jobs keep running on the backend); waits for the loops to end. */
  async close(): Promise<void> {
    this.closed = true;
    const loops = [...this.loops.values()];
    for (const l of loops) l.ctl.abort();
    await Promise.all(loops.map((l) => l.done));
  }
}
