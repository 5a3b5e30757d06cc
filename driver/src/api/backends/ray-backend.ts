// RayJobBackend: each job is a Ray job running `python -m tensorguard_ray.entrypoint`, submitted
// and followed through the driver's Ray Jobs client (driver/src/ray), as `tensorguard train` does.
// The Ray submission id is the server's job id: a retried submission is recognised by Ray
// (idempotent), and after a server restart the job is found again by the id stored with it.
// Its log is read by line index (the stored cursor), so a re-attached job continues where the
// previous server stopped reading.
import { repoRoot, venvPython } from '../../paths.js';
import {
  dashboardUrl,
  LocalHead,
  RayAuthError,
  RayError,
  RayJobNotFoundError,
  RayJobsClient,
  RayUnavailableError,
  stateDir,
  submitTrainingJob,
  TERMINAL_STATUSES,
  type RayJobDetails,
} from '../../ray/index.js';
import { JobSpecError, parseJobSpec, resolveRunConfig } from '../../spec/index.js';
import {
  BackendError,
  LogLines,
  parseMetricLine,
  pause,
  type BackendHandle,
  type BackendJobState,
  type BackendStatus,
  type DoneLine,
  type QueuedLine,
  type JobBackend,
  type LogLine,
  type MetricsLine,
  type SubmitOptions,
} from './backend.js';

export interface RayBackendOptions {
  /** Ray dashboard URL (`--address`); null: RAY_ADDRESS, else a private local Ray head. */
  address: string | null;
  /**
   * RAY_ADDRESS, RAY_AUTH_TOKEN (sent to a given cluster), TENSORGUARD_RAY_PYTHON (python on a
   * given cluster, default `<root>/.venv/bin/python` there when present, else `python`),
   * TENSORGUARD_STATE_DIR (checkpoint parent), TENSORGUARD_ROOT and the FORWARDED_ENV variables
   * passed on to jobs.
   */
  env: NodeJS.ProcessEnv;
  /** Aborts the start of a private head (Ctrl-C while it starts). */
  signal: AbortSignal;
  /** Logical CPUs of a private head (default 4). */
  numCpus?: number;
  /** Log polling interval when the log WebSocket is not available, ms (default 1000). */
  pollMs?: number;
}

/** Where jobs go: a cluster the server was given, or the private head it started. */
type Target = { kind: 'external'; address: string } | { kind: 'private'; head: LocalHead };

const STATE: Record<RayJobDetails['status'], BackendJobState> = {
  PENDING: 'PENDING',
  RUNNING: 'RUNNING',
  SUCCEEDED: 'SUCCEEDED',
  FAILED: 'FAILED',
  STOPPED: 'STOPPED',
};

/**
 * Ray's job message carries up to 20,000 characters of the entrypoint's last output (the spec
 * JSON among it); the job's message keeps its head (what happened) and tail (the error).
 */
function shorten(message: string, max = 2000): string {
  return message.length <= max ? message : `${message.slice(0, 400)} … ${message.slice(-(max - 400))}`;
}

/** A Ray client error as a BackendError: retryable only when the cluster could not be reached. */
function backendError(err: unknown, what: string): BackendError {
  if (err instanceof BackendError) return err;
  if (err instanceof RayUnavailableError)
    return new BackendError(`${what}: ${err.message}`, true, { cause: err });
  if (err instanceof RayError) return new BackendError(`${what}: ${err.message}`, false, { cause: err });
  return new BackendError(`${what}: ${(err as Error).message}`, true, { cause: err });
}

/**
 * The contract lines of a Ray job's log: only the entrypoint's own `{"type":"progress"}` and
 * `{"type":"result"}` lines. The actors' forwarded output (the coordinator's and workers' raw
 * metric lines among it) carries Ray's `(Actor pid=…)` prefix and is a log, never an event.
 */
export function parseRayJobLine(text: string): MetricsLine | DoneLine | QueuedLine | null {
  const t = text.trim();
  if (t.startsWith('{"type":"queued"')) {
    try {
      const reason = (JSON.parse(t) as { reason?: unknown }).reason;
      return {
        type: 'queued',
        reason: typeof reason === 'string' ? reason.slice(0, 500) : 'waiting for resources',
      };
    } catch {
      return null;
    }
  }
  if (!t.startsWith('{"type":"progress"') && !t.startsWith('{"type":"result"')) return null;
  return parseMetricLine(t, 'progress');
}

export class RayJobBackend implements JobBackend {
  readonly name = 'ray';
  readonly reportsQueueing = true;
  private readonly root: string;
  private readonly pollMs: number;
  /** Identifies the cluster in job handles; a private head's id dies with it. */
  private readonly clusterId: string;

  constructor(
    private readonly client: RayJobsClient,
    private readonly target: Target,
    private readonly env: NodeJS.ProcessEnv,
    pollMs = 1000,
  ) {
    this.root = repoRoot(env);
    this.pollMs = pollMs;
    this.clusterId =
      target.kind === 'external'
        ? `external:${target.address}`
        : `private:${target.head.info.tempDir}:${target.head.info.startedAt}`;
  }

  /** The dashboard URL jobs are submitted to. */
  get address(): string {
    return this.client.address;
  }

  /** The private head, when this backend started one. */
  get head(): LocalHead | undefined {
    return this.target.kind === 'private' ? this.target.head : undefined;
  }

  parseLine(text: string): MetricsLine | DoneLine | QueuedLine | null {
    return parseRayJobLine(text);
  }

  async submit({ jobId, spec, signal }: SubmitOptions): Promise<BackendHandle> {
    signal.throwIfAborted();
    let config;
    try {
      config = await resolveRunConfig(parseJobSpec(spec), {
        jobId,
        dataDir: this.env.TENSORGUARD_STATE_DIR ?? stateDir(this.root),
      });
    } catch (err) {
      // The service validated and resolved the document already; this is a bug, not the cluster.
      if (err instanceof JobSpecError) throw new BackendError(`invalid job spec: ${err.message}`, false);
      throw err;
    }
    signal.throwIfAborted();
    const local = this.target.kind === 'private';
    try {
      await submitTrainingJob(this.client, config, {
        jobId,
        root: this.root,
        ...(local
          ? { python: venvPython(this.root) }
          : this.env.TENSORGUARD_RAY_PYTHON
            ? { python: this.env.TENSORGUARD_RAY_PYTHON }
            : {}),
        ...(local ? { node: process.execPath } : {}),
        // A job the cluster cannot place yet waits QUEUED (tenants cancel it) instead of failing
        // after the CLI's 60 s, unless the operator set a limit.
        env: { TENSORGUARD_PLACEMENT_TIMEOUT_S: '0', ...this.env },
      });
    } catch (err) {
      // The request may have reached Ray before it failed; the caller forgets this job id (a
      // retry gets a new one), so make sure no job runs under it unseen.
      await this.client.stop(jobId).catch(() => undefined);
      throw backendError(err, 'Ray did not accept the job');
    }
    return { backendJobId: jobId, data: { submissionId: jobId, cluster: this.clusterId } };
  }

  private submissionId(h: BackendHandle): string {
    return typeof h.data.submissionId === 'string' ? h.data.submissionId : h.backendJobId;
  }

  /** Why a job cannot be found here, when its handle belongs to another private head. */
  private lostWith(h: BackendHandle): string | null {
    const c = typeof h.data.cluster === 'string' ? h.data.cluster : '';
    if (c === this.clusterId || !c.startsWith('private:')) return null;
    return (
      'the job ran on the private Ray head of an earlier `tensorguard serve` process, which stopped ' +
      'with it; give serve a long-lived cluster (--address or RAY_ADDRESS) so that jobs outlive a restart'
    );
  }

  private async details(h: BackendHandle): Promise<RayJobDetails> {
    const lost = this.lostWith(h);
    if (lost !== null) throw new BackendError(lost, false);
    const id = this.submissionId(h);
    try {
      return await this.client.status(id);
    } catch (err) {
      if (err instanceof RayJobNotFoundError) {
        throw new BackendError(`Ray job ${id} not found on ${this.client.address}`, false, { cause: err });
      }
      throw backendError(err, `cannot read the status of Ray job ${id}`);
    }
  }

  async status(h: BackendHandle): Promise<BackendStatus> {
    try {
      const d = await this.details(h);
      return { state: STATE[d.status], message: shorten(d.message ?? '') };
    } catch (err) {
      if (err instanceof BackendError && !err.retryable) return { state: 'FAILED', message: err.message };
      throw err;
    }
  }

  /**
   * The job's log lines from `fromIndex` on. Tails the log WebSocket while the job runs, falls
   * back to polling the whole log when the socket is unavailable, and reads the whole log once
   * more when the job has ended (its unterminated last line included). A job still PENDING has
   * no log: this waits until it leaves PENDING and then ends without a line, so that the caller
   * reads the new status (RUNNING) and follows again.
   */
  async *follow(h: BackendHandle, fromIndex: number, signal: AbortSignal): AsyncIterable<LogLine> {
    const id = this.submissionId(h);
    let d = await this.details(h);
    if (d.status === 'PENDING') {
      while (d.status === 'PENDING') {
        if (!(await pause(Math.min(this.pollMs, 500), signal))) return;
        d = await this.details(h);
      }
      return;
    }
    const tailed = new LogLines(fromIndex);
    if (!TERMINAL_STATUSES.includes(d.status)) {
      try {
        for await (const chunk of this.client.tail(id, signal)) yield* tailed.push(chunk);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof RayJobNotFoundError || err instanceof RayAuthError)
          throw backendError(err, 'log tail');
        // Otherwise the socket is unavailable (a proxy without WebSockets): poll below.
      }
      if (signal.aborted) return;
    }
    let next = tailed.next; // index of the next complete line
    for (;;) {
      const terminal = TERMINAL_STATUSES.includes((await this.details(h)).status);
      let text: string;
      try {
        text = await this.client.logs(id);
      } catch (err) {
        throw backendError(err, `cannot read the logs of Ray job ${id}`);
      }
      const all = text.split('\n');
      const last = all.pop()!; // '' when the log ends with a newline
      for (let i = next; i < all.length; i++) if (i >= fromIndex) yield { index: i, text: all[i]! };
      next = Math.max(next, all.length);
      if (terminal) {
        if (last !== '' && next >= fromIndex) yield { index: next, text: last };
        return;
      }
      if (!(await pause(this.pollMs, signal))) return;
    }
  }

  async cancel(h: BackendHandle): Promise<void> {
    if (this.lostWith(h) !== null) return; // its head, and so the job, are gone
    const id = this.submissionId(h);
    try {
      await this.client.stop(id);
    } catch (err) {
      if (err instanceof RayJobNotFoundError) return;
      throw backendError(err, `cannot stop Ray job ${id}`);
    }
  }

  /** Stops the private head (and so its jobs); jobs on a given cluster run on. */
  async close(): Promise<void> {
    if (this.target.kind === 'private') await this.target.head.close();
  }
}

/**
 * The Ray backend of `tensorguard serve`: the cluster at `address`, else RAY_ADDRESS (both the
 * dashboard's http(s) URL; RAY_AUTH_TOKEN is sent when set), else a private local Ray head
 * (the repository's .venv, its own temp dir, token auth) that close() stops. Throws RayError for
 * a bad address, a cluster that does not answer, or a head that does not start.
 */
export async function createRayJobBackend(o: RayBackendOptions): Promise<RayJobBackend> {
  const address = o.address ?? (o.env.RAY_ADDRESS || null);
  if (address !== null) {
    const url = dashboardUrl(address);
    const client = new RayJobsClient({ address: url, token: o.env.RAY_AUTH_TOKEN });
    // Fail at start, not at the first SubmitJob: a wrong address or token is a setup error.
    // An unreachable cluster is not: it may come up after the server (Kubernetes start order).
    try {
      await client.version();
    } catch (err) {
      if (!(err instanceof RayUnavailableError)) throw err;
    }
    return new RayJobBackend(client, { kind: 'external', address: url }, o.env, o.pollMs);
  }
  const root = repoRoot(o.env);
  const head = await LocalHead.start({
    root,
    signal: o.signal,
    ...(o.numCpus !== undefined ? { numCpus: o.numCpus } : {}),
  });
  return new RayJobBackend(head.client(), { kind: 'private', head }, o.env, o.pollMs);
}
