// A client of Ray's Jobs REST API (the dashboard, default port 8265) over node:http.
//
// Not fetch: Node's fetch sends `sec-fetch-mode`, which Ray's dashboard takes for browser traffic
// and answers POST/DELETE with 405. GETs are retried on connection errors and 5xx; a submission
// is retried with the same submission_id, and Ray's "already exists" for our own id (a retry
// whose first attempt did arrive) counts as success once the job's metadata shows it is ours.
import http from 'node:http';
import https from 'node:https';
import WebSocket from 'ws';
import { RayAuthError, RayHttpError, RayJobNotFoundError, RayUnavailableError } from './errors.js';

export type RayJobStatus = 'PENDING' | 'RUNNING' | 'STOPPED' | 'SUCCEEDED' | 'FAILED';
export const TERMINAL_STATUSES: readonly RayJobStatus[] = ['STOPPED', 'SUCCEEDED', 'FAILED'];

/** The fields of Ray's JobDetails that the driver uses. */
export interface RayJobDetails {
  submission_id: string | null;
  job_id: string | null;
  status: RayJobStatus;
  entrypoint: string;
  message: string | null;
  error_type: string | null;
  /** Milliseconds since the epoch (0 or null before it started). */
  start_time: number | null;
  end_time: number | null;
  metadata: Record<string, string> | null;
}

export interface SubmitRequest {
  entrypoint: string;
  submissionId: string;
  runtimeEnv?: Record<string, unknown>;
  metadata?: Record<string, string>;
  /** CPUs reserved for the entrypoint process. Default 0 (it only supervises). */
  entrypointNumCpus?: number;
}

export interface RayJobsClientOptions {
  /** Dashboard URL, e.g. http://127.0.0.1:8265. */
  address: string;
  /** Token of a cluster started with RAY_AUTH_MODE=token. */
  token?: string | undefined;
  /** Per-request deadline. Default 10000 ms. */
  timeoutMs?: number;
  /** Attempts for retryable requests. Default 4 (with 250 ms, 500 ms, 1 s back-off). */
  attempts?: number;
}

interface HttpResult {
  status: number;
  body: string;
}

const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EAI_AGAIN',
]);

export class RayJobsClient {
  readonly address: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly attempts: number;

  constructor(opts: RayJobsClientOptions) {
    this.address = opts.address.replace(/\/+$/, '');
    this.token = opts.token || undefined;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.attempts = opts.attempts ?? 4;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      accept: 'application/json',
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...extra,
    };
  }

  private once(method: string, path: string, body?: unknown): Promise<HttpResult> {
    const url = new URL(this.address + path);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method,
          headers: this.headers(
            data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {},
          ),
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error(`no answer in ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  /** One request with retries on connection errors (and 5xx when `retry5xx`). */
  private async request(method: string, path: string, body?: unknown, retry5xx = true): Promise<HttpResult> {
    let last: unknown;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      try {
        const res = await this.once(method, path, body);
        if (res.status === 401 || res.status === 403) throw new RayAuthError(this.address);
        if (res.status < 500 || !retry5xx) return res;
        last = new RayHttpError(method, path, res.status, res.body);
      } catch (err) {
        if (err instanceof RayAuthError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        if (!code || !RETRYABLE_CODES.has(code)) {
          throw new RayUnavailableError(this.address, (err as Error).message, { cause: err });
        }
        last = err;
      }
      if (attempt < this.attempts) await new Promise((r) => setTimeout(r, 250 * 2 ** (attempt - 1)));
    }
    if (last instanceof RayHttpError) {
      throw new RayUnavailableError(this.address, `${last.status} after ${this.attempts} attempts`, {
        cause: last,
      });
    }
    throw new RayUnavailableError(this.address, (last as Error).message, { cause: last });
  }

  private async json<T>(method: string, path: string, body?: unknown, notFoundId?: string): Promise<T> {
    const res = await this.request(method, path, body);
    if (res.status === 404 && notFoundId !== undefined)
      throw new RayJobNotFoundError(notFoundId, this.address);
    if (res.status < 200 || res.status >= 300) throw new RayHttpError(method, path, res.status, res.body);
    return JSON.parse(res.body) as T;
  }

  /** The cluster's Ray version; the readiness probe of the dashboard. */
  async version(): Promise<{ ray_version: string }> {
    return this.json('GET', '/api/version');
  }

  /** Nodes that are ALIVE (the state API); 0 until the raylet registered. */
  async aliveNodes(): Promise<number> {
    const r = await this.json<{ data: { result: { result: { state: string }[] } } }>(
      'GET',
      '/api/v0/nodes?detail=false&limit=100',
    );
    return r.data.result.result.filter((n) => n.state === 'ALIVE').length;
  }

  /**
   * Submits a job; returns its submission id. Safe to retry: a repeated id whose job carries the
   * same `metadata.tensorguard_submission` is taken as this submission having arrived earlier.
   */
  async submit(req: SubmitRequest): Promise<string> {
    const metadata = { ...req.metadata, tensorguard_submission: req.submissionId };
    const body = {
      entrypoint: req.entrypoint,
      submission_id: req.submissionId,
      runtime_env: req.runtimeEnv ?? {},
      metadata,
      entrypoint_num_cpus: req.entrypointNumCpus ?? 0,
    };
    const res = await this.request('POST', '/api/jobs/', body, false);
    if (res.status >= 200 && res.status < 300) {
      return (JSON.parse(res.body) as { submission_id: string }).submission_id;
    }
    if (res.status === 500 && /already exists/i.test(res.body)) {
      const existing = await this.status(req.submissionId);
      if (existing.metadata?.tensorguard_submission === req.submissionId) return req.submissionId;
    }
    throw new RayHttpError('POST', '/api/jobs/', res.status, res.body);
  }

  async status(submissionId: string): Promise<RayJobDetails> {
    return this.json('GET', `/api/jobs/${encodeURIComponent(submissionId)}`, undefined, submissionId);
  }

  /** All logs of the job so far. */
  async logs(submissionId: string): Promise<string> {
    const r = await this.json<{ logs: string }>(
      'GET',
      `/api/jobs/${encodeURIComponent(submissionId)}/logs`,
      undefined,
      submissionId,
    );
    return r.logs;
  }

  /** Asks Ray to stop the job; false when it had already ended. */
  async stop(submissionId: string): Promise<boolean> {
    const r = await this.json<{ stopped: boolean }>(
      'POST',
      `/api/jobs/${encodeURIComponent(submissionId)}/stop`,
      undefined,
      submissionId,
    );
    return r.stopped;
  }

  async delete(submissionId: string): Promise<boolean> {
    const r = await this.json<{ deleted: boolean }>(
      'DELETE',
      `/api/jobs/${encodeURIComponent(submissionId)}`,
      undefined,
      submissionId,
    );
    return r.deleted;
  }

  async list(): Promise<RayJobDetails[]> {
    return this.json('GET', '/api/jobs/');
  }

  /**
   * Streams the job's log text as Ray sends it (from the start), through the WebSocket at
   * /logs/tail, until the job ends (Ray closes the socket) or `signal` aborts. Chunks are not
   * split at line ends: use `lines()` to get lines.
   */
  async *tail(submissionId: string, signal?: AbortSignal): AsyncGenerator<string> {
    await this.status(submissionId); // 404 → RayJobNotFoundError rather than a socket error
    const url = `${this.address.replace(/^http/, 'ws')}/api/jobs/${encodeURIComponent(submissionId)}/logs/tail`;
    const ws = new WebSocket(url, { headers: this.headers(), perMessageDeflate: false });
    const queue: string[] = [];
    let done = false;
    let error: unknown;
    let wake: (() => void) | undefined;
    const notify = () => {
      wake?.();
      wake = undefined;
    };
    ws.on('message', (data: WebSocket.RawData) => {
      queue.push(data.toString());
      notify();
    });
    ws.on('close', () => {
      done = true;
      notify();
    });
    ws.on('error', (err) => {
      error = new RayUnavailableError(this.address, `log tail: ${err.message}`, { cause: err });
      done = true;
      notify();
    });
    // terminate, not close: a close handshake waits for the server's answer (up to 30 s), and
    // a cancelled job whose log is silent (still waiting for resources) would hold the caller.
    const onAbort = () => {
      done = true;
      notify();
      ws.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (done) break;
        await new Promise<void>((r) => (wake = r));
      }
      if (error && !signal?.aborted) throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      ws.terminate();
    }
  }
}

/** Splits a stream of text chunks into lines (the last, unterminated one included). */
export async function* lines(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of chunks) {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) yield rest;
}
